"""The workspace engine: the daemon inside each workspace sandbox. It runs chats on the agent CLIs
(`agents/`), keeps the append-only event journal, and reports repository state to the control plane
(ARCHITECTURE.md, principle 3; spec §9)."""
