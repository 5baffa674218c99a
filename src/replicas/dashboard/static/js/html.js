// htm bound to preact's h: components write html`<div class=${x}>...</div>` instead of JSX (no build step).
import { h } from "preact";
import htm from "htm";

export const html = htm.bind(h);
