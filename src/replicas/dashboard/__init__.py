"""The dashboard: a browser app served by the control plane at `/`, on the same origin as `/v1`.

    static/index.html       the page (hash routes: #/replicas, #/replicas/<id>, #/environments, ...)
    static/app.css          one stylesheet, light and dark following the system
    static/js/api.js        the one API client: every call the pages make (they never call fetch)
    static/js/pages/        one module per page; static/js/components/: shared pieces
    static/vendor/          npm packages at pinned versions, copied by `make dashboard-vendor`
                            (replicas.dashboard.vendoring) and checked against vendor.lock.json

No build step and no request to another origin: every asset ships in the Python package. The page signs in
through /auth/session (api/routers/sessions.py) and then uses the public /v1 API with its session cookie.
"""

from replicas.dashboard.routes import mount_dashboard

__all__ = ["mount_dashboard"]
