"""Fake image-generation backends for tests: small Flask apps answering like the real servers."""


from typing import Any

from flask import Flask, request


def record_request(app: Flask, **extra: Any) -> dict[str, Any]:
    """Append what the current request carried to ``app.config["REQUESTS"]`` (tests assert on
    it): method, path, auth presence, JSON body or multipart fields and file names."""
    entry: dict[str, Any] = {
        "method": request.method,
        "path": request.path,
        "auth": "Authorization" in request.headers,
        **extra,
        "content_type": request.mimetype,
        "json": None,
        "form": {},
        "files": {},
    }
    if request.is_json:
        entry["json"] = request.get_json(silent=True)
    elif request.mimetype == "multipart/form-data":
        entry["form"] = request.form.to_dict()
        entry["files"] = {
            name: [f.filename for f in request.files.getlist(name)] for name in request.files
        }
    app.config["REQUESTS"].append(entry)
    return entry
