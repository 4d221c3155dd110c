"""Pages and htmx fragments, one module per kind of page. Each fragment template is also
included by its full page."""

from __future__ import annotations

from flask import Flask

from ..format import MODE_LABELS, condition_holds, when_json
from . import compare, events, gallery, generate, grids, jobs, pnginfo, services, styles, workflows
from .common import backticks, input_image_mode, seed_parameter


def register(app: Flask) -> None:
    """Attach every page's blueprint, and the template helpers they use."""
    for module in (services, generate, jobs, gallery, styles, pnginfo, compare, grids,
                   workflows):
        app.register_blueprint(module.bp)
    app.jinja_env.filters["backticks"] = backticks
    app.jinja_env.filters["when_json"] = when_json
    app.jinja_env.globals["condition_holds"] = condition_holds
    app.jinja_env.globals["job_mark"] = jobs.job_mark
    app.jinja_env.globals["events_url"] = jobs.events_url
    events.install(app)
    app.jinja_env.globals["input_image_mode"] = input_image_mode
    app.jinja_env.globals["seed_parameter"] = seed_parameter
    # The modes webui knows by name (the gallery's filter and captions).
    app.jinja_env.globals["mode_labels"] = MODE_LABELS
    app.jinja_env.globals["result_slots"] = jobs.result_slots
    app.jinja_env.globals["png_info_send_url"] = pnginfo.send_url
    app.jinja_env.globals["can_compare"] = compare.can_compare
    # Pickers (a select searched on the server, the styles of a form).
    app.jinja_env.globals["param_picker"] = services.param_picker
    # A backend-fed select drawn with its choices when they are cached; a status likewise.
    app.jinja_env.globals["cached_select"] = services.cached_select
    app.jinja_env.globals["known_status"] = services.known_status
    app.jinja_env.globals["styles_picker"] = styles.styles_picker
    # X/Y/Z grids: the form's axes, a grid's panel on the form page (?grid=<id>).
    app.jinja_env.globals["grid_offered"] = grids.grid_offered
    app.jinja_env.globals["grid_axis_choices"] = grids.axis_choices
    app.jinja_env.globals["grid_panel"] = grids.grid_panel
