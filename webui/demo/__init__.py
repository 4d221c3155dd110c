"""Built-in demo backend: an emulator of a subset of the AUTOMATIC1111 WebUI 1.10.1 HTTP API.

It draws deterministic procedural pictures with Pillow (no model, no GPU) so the app works out of
the box and end-to-end tests have a real HTTP backend. The app talks to it exactly as to a real
A1111 server, through the same definition file.

Behaviour that follows the real server (the contract material in /work/shared/a1111 and the
source of AUTOMATIC1111/stable-diffusion-webui 1.10.1; notes/a1111-family.md has the citations)
and the decisions of the demo (not A1111 behaviour) are listed in the docstring of the module
that implements them:

- ``api``: the Flask app (``create_demo_app``): the routes, HTTP basic auth, error handlers.
- ``state``: ``DemoBackend``, the state of one server: the fixed lists and options,
  checkpoints, override_settings, samplers, seeds, job planning and running, progress and live
  previews, interrupt and skip.
- ``extras``: the Extras tab's upscaling (POST extra-single-image): upscalers, target sizes,
  the info and text chunks of the answer.
- ``plan``: the resolved request (``_Plan``): each image's picture, infotext and ``info``.
- ``checkpoints``: checkpoint names as A1111's CheckpointInfo derives them.
- ``validation``: the request field tables, their FastAPI + pydantic v1 style validation, the
  decoding of init images and A1111's error shapes.
- ``painter``: the procedural pictures, noise, init image preparation and PNG encoding.
- ``data/``: the JSON the fixed GET routes answer and the initial options.

Imports run one way: api -> state -> extras and plan -> painter and checkpoints (extras also
uses plan's quoting); api, state and extras also use validation and painter, which (like
checkpoints) import nothing from the package. None of the modules imports this ``__init__``,
which only re-exports their names.
"""

from __future__ import annotations

from .api import API_PREFIX as API_PREFIX
from .api import create_demo_app
from .checkpoints import _name_for_extra as _name_for_extra
from .painter import _flatten as _flatten
from .plan import VERSION as VERSION
from .plan import _Plan as _Plan
from .plan import _quote as _quote
from .state import DATA_DIR as DATA_DIR
from .state import LIST_ROUTES as LIST_ROUTES
from .state import MAX_BATCH_SIZE as MAX_BATCH_SIZE
from .state import MAX_IMAGES as MAX_IMAGES
from .state import MAX_SIDE as MAX_SIDE
from .state import MAX_STEPS as MAX_STEPS
from .state import MIN_SIDE as MIN_SIDE
from .state import DemoBackend
from .validation import IMG2IMG_FIELDS as IMG2IMG_FIELDS
from .validation import TXT2IMG_FIELDS as TXT2IMG_FIELDS
from .validation import _ApiError as _ApiError
from .validation import _value as _value

__all__ = ["DemoBackend", "create_demo_app"]
