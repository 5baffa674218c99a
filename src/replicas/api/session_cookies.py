"""The dashboard's cookies (services/sessions.py holds the rules).

`replicas_session` carries the session token: HttpOnly (page scripts never see it), SameSite=Strict (no other
site's page sends it), Secure when served over HTTPS, and expiring with the session. `replicas_csrf` carries
the matching CSRF token and is readable by the page, which sends it back in `X-CSRF-Token` on writes.
"""

from __future__ import annotations

from fastapi import Request, Response

SESSION_COOKIE = "replicas_session"
CSRF_COOKIE = "replicas_csrf"
CSRF_HEADER = "X-CSRF-Token"


def set_session_cookies(request: Request, response: Response, token: str, csrf_token: str, max_age: int) -> None:
    secure = request.url.scheme == "https"
    response.set_cookie(SESSION_COOKIE, token, max_age=max_age, path="/", httponly=True, samesite="strict",
                        secure=secure)
    response.set_cookie(CSRF_COOKIE, csrf_token, max_age=max_age, path="/", httponly=False, samesite="strict",
                        secure=secure)


def clear_session_cookies(request: Request, response: Response) -> None:
    secure = request.url.scheme == "https"
    for name, httponly in ((SESSION_COOKIE, True), (CSRF_COOKIE, False)):
        response.delete_cookie(name, path="/", httponly=httponly, samesite="strict", secure=secure)
