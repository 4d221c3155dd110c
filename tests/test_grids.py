"""X/Y/Z grids: the values of an axis read as A1111 reads them, every cell checked before
anything is queued, one job per cell over a pool, the composed picture in the history, cancel.

The range grammar is A1111's (AUTOMATIC1111/stable-diffusion-webui, scripts/xyz_grid.py at
1.10: re_range, re_range_float, re_range_count, re_range_count_float, process_axis)."""

from __future__ import annotations

import html
import io
import re

import pytest
from PIL import Image

from webui import create_app
from webui.demo import create_demo_app
from webui.grids import AxisError, compose, expand_numbers, split_values
from webui.infotext import read_png_infotext

from .helpers import (
    HX,
    Counted,
    ServerThread,
    defaults,
    demo_extra,
    form,
    image_bytes,
    wait_for,
    wrap_event,
)

# -- the values of an axis ---------------------------------------------------------------------


@pytest.mark.parametrize(("text", "whole", "values"), [
    # A1111's examples in its UI's hints and wiki: "1-5", "1-3 [5]", "20-40 (+10)".
    ("1-5", True, ["1", "2", "3", "4", "5"]),
    ("20-40 (+10)", True, ["20", "30", "40"]),
    ("20-45 (+10)", True, ["20", "30", "40"]),  # the end only when a step lands on it
    ("1-3 [5]", True, ["1", "1", "2", "2", "3"]),  # linspace, then int(): A1111 truncates
    ("1-3 [5]", False, ["1", "1.5", "2", "2.5", "3"]),
    ("0-1 (+0.25)", False, ["0", "0.25", "0.5", "0.75", "1"]),
    ("0-0.3 (+0.1)", False, ["0", "0.1", "0.2", "0.3"]),  # no 0.4 by rounding
    ("7, 9.5, 12", False, ["7", "9.5", "12"]),
    ("10-20 (+5), 50", True, ["10", "15", "20", "50"]),
    ("20-10 (-5)", True, ["20", "15", "10"]),  # counting down ends on its end
    ("5-3", True, ["5", "4", "3"]),
    ("-2 - 2", True, ["-2", "-1", "0", "1", "2"]),
    ("3-3 [1]", True, ["3"]),
    ("abc", True, ["abc"]),  # not a range: a value the form's own check refuses
])
def test_number_values_are_read_as_a1111_reads_them(text, whole, values):
    assert expand_numbers(text, whole) == values


@pytest.mark.parametrize(("text", "message"), [
    ("1-10 (-1)", "never reaches"),
    ("1-1000", "lists 1000 values"),
    ("1-5 [0]", "a count goes from 1"),
    ("1.5-3", "not a whole number"),
])
def test_ranges_that_cannot_be_made_are_refused(text, message):
    with pytest.raises(AxisError, match=re.escape(message)):
        expand_numbers(text, True)


def test_lists_are_csv_so_a_value_may_hold_a_comma():
    assert split_values('cat, "red, blue", dog,,') == ["cat", "red, blue", "dog"]


# -- the composed picture ----------------------------------------------------------------------


def dark_pixels(image: Image.Image, box: tuple[int, int, int, int]) -> int:
    return sum(1 for v in image.crop(box).convert("L").get_flattened_data() if v < 100)


def test_the_picture_has_a_label_above_each_column_and_beside_each_row():
    cells = [Image.new("RGB", (128, 96), (90, 160, 90)) for _ in range(6)]
    picture = compose(cells, 3, ["Steps: 10", "Steps: 20", "Steps: 30"],
                      ["CFG: 5", "CFG: 9"], title="Euler a")
    width, height = picture.size
    left = width - 3 * 128
    top = height - 2 * 96
    assert left > 0 and top > 0
    for column in range(3):  # ink above each column, in its own band
        assert dark_pixels(picture, (left + column * 128, 0, left + (column + 1) * 128, top)) > 20
    for row in range(2):  # and left of each row
        assert dark_pixels(picture, (0, top + row * 96, left, top + (row + 1) * 96)) > 20
    assert picture.getpixel((left + 5, top + 5)) == (90, 160, 90)


def test_a_cell_without_a_picture_is_grey_and_says_why():
    picture = compose([Image.new("RGB", (64, 64), "white"), None], 2, ["a", "b"], [],
                      missing=["", "failed"])
    assert picture.getpixel((picture.width - 2, picture.height - 2)) == (200, 200, 200)


# -- grids over a pool ---------------------------------------------------------------------------


@pytest.fixture
def pool_app(make_settings):
    servers = [ServerThread(create_demo_app(step_delay=0.01)) for _ in range(2)]
    app = create_app(make_settings(extras=[demo_extra(",".join(s.url for s in servers))]))
    yield app, servers
    for server in servers:
        server.stop()


def grid_form(**axes):
    data = form(steps="4", width="64", height="64")
    data.update(axes)
    return data


def grid_of(app, html):
    grid_id = re.search(r'id="grid-([0-9a-f]{32})"', html).group(1)
    return app.extensions["webui"].grids.get(grid_id)


def test_a_3x3_grid_runs_on_both_instances_and_lands_in_the_gallery(pool_app):
    app, servers = pool_app
    client = app.test_client()
    r = client.post("/services/demo/txt2img/grid", headers=HX, data=grid_form(**{
        "grid-x-param": "steps", "grid-x-values": "2-6 (+2)",
        "grid-y-param": "sampler_name", "grid-y-pick": ["Euler a", "DPM++ 2M", "DDIM"]}))
    assert r.status_code == 202, r.get_data(as_text=True)
    grid = grid_of(app, r.get_data(as_text=True))
    assert r.headers["HX-Push-Url"] == f"/services/demo/txt2img?grid={grid.id}"
    assert len(grid.jobs) == 9
    # X changes fastest: steps 2, 4, 6 in each row; one sampler per row.
    assert [j.values["steps"] for j in grid.jobs] == [2, 4, 6] * 3
    assert [j.values["sampler_name"] for j in grid.jobs[::3]] == ["Euler a", "DPM++ 2M", "DDIM"]
    # One seed for every cell (the form said -1): they differ by their axes only.
    assert len({j.sent["seed"] for j in grid.jobs}) == 1
    wait_for(lambda: grid.status == "done", timeout=60, what="the grid to be composed")
    assert [j.status for j in grid.jobs] == ["done"] * 9
    assert {j.instance for j in grid.jobs} == {s.url for s in servers}
    history = app.extensions["webui"].history
    record = history.get_job(grid.id)
    assert record.parameters["webui-grid"]["jobs"] == [j.id for j in grid.jobs]
    assert [a["labels"] for a in record.parameters["webui-grid"]["axes"]] == [
        ["Steps: 2", "Steps: 4", "Steps: 6"], ["Euler a", "DPM++ 2M", "DDIM"]]
    (picture,) = record.images
    data = client.get(f"/images/{picture.path}").data
    composed = Image.open(io.BytesIO(data))
    assert composed.width > 3 * 64 and composed.height > 3 * 64  # cells and their labels
    # Each cell is an image of the gallery too, and the grid is one of its own.
    page = client.get("/gallery").get_data(as_text=True)
    assert picture.path in page or f"/gallery/{picture.id}" in page
    for job in grid.jobs:
        assert history.get_job(job.id).images
    # Its page links back to its cells; its PNG carries the first cell's parameters.
    image_page = client.get(f"/gallery/{picture.id}").get_data(as_text=True)
    assert "An X/Y/Z grid of 9 cells (X: Steps, Y: Sampler)" in image_page
    assert f'href="/grids/{grid.id}"' in image_page
    assert "Steps: 2, Sampler: Euler a" in read_png_infotext(data)
    # The grid's page: the picture, the labelled axes and every cell.
    shown = client.get(f"/grids/{grid.id}").get_data(as_text=True)
    assert f"/gallery/{picture.id}" in shown and "Steps: 4" in shown and "DPM++ 2M" in shown
    assert shown.count('class="grid-cell cell-done"') == 9


def test_a_bad_value_is_refused_before_anything_is_queued(pool_app):
    app, _ = pool_app
    client = app.test_client()
    jobs = app.extensions["webui"].jobs
    r = client.post("/services/demo/txt2img/grid", headers=HX, data=grid_form(**{
        "grid-x-param": "steps", "grid-x-values": "10, 20, 900"}))
    assert r.status_code == 422
    answer = r.get_data(as_text=True)
    assert r.headers["HX-Retarget"] == "#errors-txt2img"
    assert "X = 900: Steps must be at most 150" in answer
    assert 'href="#f-txt2img-grid-x"' in answer
    assert jobs.active() == [] and not jobs._jobs  # nothing queued, not even the good cells


@pytest.mark.parametrize(("fields", "message"), [
    ({"grid-x-param": "steps", "grid-x-values": "1-9999"}, "X (Steps) '1-9999' lists 9999 values"),
    ({}, "Choose a field for the X axis"),
    ({"grid-x-param": "steps", "grid-x-values": "1-9", "grid-y-param": "steps",
      "grid-y-values": "1"}, "Y varies Steps, as X does"),
    ({"grid-x-param": "prompt-sr", "grid-x-values": "dog, fox"}, "'dog' is not in the prompt"),
    ({"grid-x-param": "sampler_name", "grid-x-pick": ["Euler a", "No such sampler"]},
     "X = No such sampler: Sampler"),
    ({"grid-x-param": "hr_scale", "grid-x-values": "1.5, 2"}, "does not apply"),
])
def test_axes_that_cannot_be_run_say_why(pool_app, fields, message):
    app, _ = pool_app
    r = app.test_client().post("/services/demo/txt2img/grid", headers=HX,
                               data=grid_form(**fields))
    assert r.status_code == 422
    assert message in html.unescape(r.get_data(as_text=True))
    assert not app.extensions["webui"].jobs._jobs


def test_prompt_search_replace_and_the_cost_said_first(pool_app):
    app, _ = pool_app
    client = app.test_client()
    fields = grid_form(prompt="a cat on a cat mat", negative_prompt="no cat",
                       **{"grid-x-param": "prompt-sr", "grid-x-values": "cat, dog, fox",
                          "grid-z-param": "cfg_scale", "grid-z-values": "5, 9"})
    cost = client.post("/services/demo/txt2img/grid/cost", headers=HX, data=fields)
    assert "2 grids of 3 × 1" in cost.get_data(as_text=True)
    assert "6 jobs" in cost.get_data(as_text=True)
    r = client.post("/services/demo/txt2img/grid", headers=HX, data=fields)
    assert r.status_code == 202, r.get_data(as_text=True)
    grid = grid_of(app, r.get_data(as_text=True))
    assert [j.values["prompt"] for j in grid.jobs[:3]] == [
        "a cat on a cat mat", "a dog on a dog mat", "a fox on a fox mat"]
    assert grid.jobs[2].values["negative_prompt"] == "no fox"
    assert [j.values["cfg_scale"] for j in grid.jobs] == [5, 5, 5, 9, 9, 9]
    wait_for(lambda: grid.status == "done", timeout=60, what="the grid")
    assert len(grid.pictures) == 2  # one grid per Z value


@pytest.fixture
def running_grid(make_settings):
    """Starts a grid of 30-step cells on a slow demo (0.2 s a step) over the axis given, and
    waits for its first cell to be sampling: (app, client, grid)."""
    slow = ServerThread(create_demo_app(step_delay=0.2))

    def start(param: str, values: str):
        app = create_app(make_settings(extras=[demo_extra(slow.url)]))
        client = app.test_client()
        r = client.post("/services/demo/txt2img/grid", headers=HX, data=grid_form(
            steps="30", **{"grid-x-param": param, "grid-x-values": values}))
        grid = grid_of(app, r.get_data(as_text=True))
        # Sampling: a cell stopped before its request went is cancelled, not interrupted.
        wait_for(lambda: grid.jobs[0].progress.step, what="the first cell to sample")
        return app, client, grid

    yield start
    slow.stop()


def test_cancel_stops_every_cell_and_composes_nothing(running_grid):
    app, client, grid = running_grid("cfg_scale", "3-7")
    answer = client.post(f"/grids/{grid.id}/cancel", headers=HX)
    assert answer.status_code == 200
    wait_for(lambda: grid.status == "cancelled", what="the grid to be cancelled")
    assert grid.jobs[0].status == "interrupted"
    assert [j.status for j in grid.jobs[1:]] == ["cancelled"] * 4
    assert grid.pictures == [] and app.extensions["webui"].history.get_job(grid.id) is None
    final = client.get(f"/grids/{grid.id}/update?seen=", headers=HX)
    assert "HX-Retarget" not in final.headers  # the final panel comes out of band
    assert f'id="grid-{grid.id}" data-status="cancelled" tabindex="-1" hx-swap-oob="true"' \
        in final.get_data(as_text=True)
    assert "Cancel grid" not in final.get_data(as_text=True)


def test_cancel_takes_every_waiting_cell_out_before_stopping_the_running_one(make_settings):
    """The waiting cells leave the queue together, first: none can start while the others
    are being stopped. (The next cell used to start while the first cancelled ones were being
    recorded, and then ran whole: its interrupt came before it began, and A1111 forgets an
    interrupt then: modules/shared_state.py State.begin, 1.10.1, as the demo does.)"""
    demo = Counted(step_delay=0.05)
    with ServerThread(demo) as server:
        app = create_app(make_settings(extras=[demo_extra(server.url)]))
        client = app.test_client()
        r = client.post("/services/demo/txt2img/grid", headers=HX, data=grid_form(
            steps="100", **{"grid-x-param": "cfg_scale", "grid-x-values": "3-7"}))
        grid = grid_of(app, r.get_data(as_text=True))
        wait_for(lambda: (grid.jobs[0].progress.step or 0) >= 1, what="the first cell to sample")
        jobs = app.extensions["webui"].jobs
        waiting_then = []
        wrap_event(client, "ended", lambda job, status: waiting_then.append(
            jobs.load(job.service)[0]))
        assert client.post(f"/grids/{grid.id}/cancel", headers=HX).status_code == 200
        wait_for(lambda: grid.status == "cancelled", what="the grid to be cancelled")
        assert [j.status for j in grid.jobs] == ["interrupted"] + ["cancelled"] * 4
        assert waiting_then[:4] == [0] * 4  # the first cell recorded cancelled: none waits
        assert demo.asked.count("POST /sdapi/v1/txt2img") == 1
        assert demo.asked.count("POST /sdapi/v1/interrupt") == 1


def test_the_panel_sends_only_the_cells_that_changed(running_grid):
    _app, client, grid = running_grid("seed", "1-4")

    def sent(seen):
        html = client.get(f"/grids/{grid.id}/update", query_string={"seen": seen},
                          headers=HX).get_data(as_text=True)
        return set(re.findall(r'id="grid-\w+-cell-(\d+)"', html))

    # Nothing changed: only the running cell (its progress) comes again.
    assert sent(grid.mark()) == {"0"}
    # The page shows cell 2 otherwise than it is: it is sent again.
    seen = grid.mark()
    assert sent(seen[:4] + "d1" + seen[6:]) == {"0", "2"}
    client.post(f"/grids/{grid.id}/cancel", headers=HX)
    wait_for(lambda: not grid.active, what="the grid to end")


@pytest.mark.parametrize(("service", "mode", "axes"), [
    ("comfyui", "txt2img", {"grid-y-param": "steps", "grid-y-values": "2, 3",
                            "ckpt_name": "sdxl-demo.safetensors", "width": "64", "height": "64"}),
    ("openai", "txt2img", {}),
    ("openai", "img2img", {}),  # the uploaded image goes with every cell
    ("stability", "txt2img", {"grid-y-param": "aspect_ratio", "grid-y-pick": ["1:1", "16:9"]}),
])
def test_every_bundled_service_makes_grids(services_app, service, mode, axes):
    client = services_app.test_client()
    data = {**defaults(services_app, service, mode), "prompt": "a fox in the snow",
            "grid-x-param": "prompt-sr", "grid-x-values": "fox, owl", **axes}
    if mode == "img2img":
        data["image"] = (io.BytesIO(image_bytes((64, 64))), "input.png")
    r = client.post(f"/services/{service}/{mode}/grid", headers=HX, data=data,
                    content_type="multipart/form-data")
    assert r.status_code == 202, r.get_data(as_text=True)
    grid = grid_of(services_app, r.get_data(as_text=True))
    wait_for(lambda: not grid.active, timeout=60, what=f"the {service} grid")
    assert grid.status == "done", [(j.status, j.error) for j in grid.jobs]
    assert [j.sent["prompt"] for j in grid.jobs[:2]] == ["a fox in the snow", "a owl in the snow"]
    assert len(grid.pictures) == 1 and all(j.images for j in grid.jobs)


def test_a_grid_page_is_drawn_from_the_history_after_a_restart(make_settings, demo_server):
    first = create_app(make_settings(extras=[demo_extra(demo_server.url)]))
    r = first.test_client().post("/services/demo/txt2img/grid", headers=HX, data=grid_form(
        **{"grid-x-param": "cfg_scale", "grid-x-values": "4, 8"}))
    grid = grid_of(first, r.get_data(as_text=True))
    wait_for(lambda: grid.status == "done", timeout=30, what="the grid")
    again = create_app(make_settings(extras=[demo_extra(demo_server.url)]))
    page = again.test_client().get(f"/grids/{grid.id}").get_data(as_text=True)
    assert f"/gallery/{grid.pictures[0].id}" in page
    assert "CFG scale: 4" in page and "CFG scale: 8" in page
    assert "A1111 demo · Text to image · X: CFG scale" in page
    assert page.count('class="grid-cell cell-done"') == 2
    assert "Cancel grid" not in page and "data-poll" not in page


def test_the_model_changes_slowest_in_the_queue(pool_app):
    # Loading a checkpoint is slow: its axis is run outermost (as A1111's plot does), while the
    # grid keeps its reading order.
    app, _ = pool_app
    r = app.test_client().post("/services/demo/txt2img/grid", headers=HX, data=grid_form(**{
        "grid-x-param": "sd_model_checkpoint",
        "grid-x-pick": ["demo-procedural", "demo-pastel"],
        "grid-y-param": "cfg_scale", "grid-y-values": "4, 6, 8"}))
    assert r.status_code == 202, r.get_data(as_text=True)
    grid = grid_of(app, r.get_data(as_text=True))
    def models(jobs):
        return [j.values["sd_model_checkpoint"].split(".")[0] for j in jobs]
    assert models(grid.jobs) == ["demo-procedural", "demo-pastel"] * 3
    queued = sorted(grid.jobs, key=lambda j: j.created)
    assert models(queued) == ["demo-procedural"] * 3 + ["demo-pastel"] * 3
    wait_for(lambda: not grid.active, timeout=30, what="the grid")


def test_without_javascript_the_grid_page_follows(pool_app):
    app, _ = pool_app
    r = app.test_client().post("/services/demo/txt2img/grid", data=grid_form(**{
        "grid-x-param": "sampler_name", "grid-x-values": "Euler a, DDIM"}))  # typed, not ticked
    assert r.status_code == 303 and r.headers["Location"].startswith("/grids/")
    grid = app.extensions["webui"].grids.get(r.headers["Location"].rsplit("/", 1)[1])
    assert [j.values["sampler_name"] for j in grid.jobs] == ["Euler a", "DDIM"]
    wait_for(lambda: not grid.active, timeout=30, what="the grid")


def test_the_cost_counts_the_images_of_each_cell(pool_app):
    app, _ = pool_app
    client = app.test_client()

    def cost(**fields):
        answer = client.post("/services/demo/txt2img/grid/cost", headers=HX,
                             data=grid_form(**fields))
        text = re.sub(r"<[^>]+>", "", answer.get_data(as_text=True))
        return " ".join(html.unescape(text).split())

    assert cost(batch_size="2", **{"grid-x-param": "steps", "grid-x-values": "1-3"}) == \
        "3 × 1: 3 jobs, 6 images (2 per job; the grid shows the first of each)."
    assert cost(**{"grid-x-param": "batch_size", "grid-x-values": "1, 4"}) == \
        "2 × 1: 2 jobs, 5 images."
    assert cost(**{"grid-x-param": "steps", "grid-x-values": "1-20",
                   "grid-y-param": "cfg_scale", "grid-y-values": "1-6"}) == \
        "120 cells: a grid has 100 at most."
    assert cost(**{"grid-x-param": "steps", "grid-x-values": "5-1 (+1)"}) == \
        "X (Steps) '5-1 (+1)': the step 1 never reaches 1"
    assert not app.extensions["webui"].jobs._jobs  # asking the cost queues nothing


def test_an_on_off_field_is_an_axis_of_its_two_values(pool_app):
    app, _ = pool_app
    client = app.test_client()
    options = client.get("/services/demo/txt2img/grid/axis/x",
                         query_string={"grid-x-param": "enable_hr"}).get_data(as_text=True)
    assert re.findall(r'name="grid-x-pick" value="(\w+)"> (\w+)', options) == [
        ("true", "on"), ("false", "off")]
    r = client.post("/services/demo/txt2img/grid", headers=HX, data=grid_form(**{
        "grid-x-param": "enable_hr", "grid-x-pick": ["true", "false"]}))
    assert r.status_code == 202, r.get_data(as_text=True)
    grid = grid_of(app, r.get_data(as_text=True))
    assert [j.values["enable_hr"] for j in grid.jobs] == [True, False]
    assert grid.axes[0].labels == ["Hires fix: on", "Hires fix: off"]
    wait_for(lambda: not grid.active, timeout=30, what="the grid")
