"""The synthetic world: rendering, masks, scene recipes and the kinds of referring expressions."""
import numpy as np
import pytest

from rvos.datasets.synthetic.common import make_video
from rvos.datasets.synthetic.language import Describer
from rvos.datasets.synthetic.naming import video_rng
from rvos.datasets.synthetic.scenes import RECIPES
from rvos.datasets.synthetic.world import COLOURS

SIZE = (96, 160)


def _video(recipe, num_objects=3, seed=0, frames=12, **options):
    rng = video_rng(seed, "test", "world", 0)
    return make_video("v", rng, SIZE, frames, recipe, num_objects, **options), rng


def test_rendering_is_deterministic_and_seed_dependent():
    first, _ = _video("motion_twins", seed=1)
    again, _ = _video("motion_twins", seed=1)
    other, _ = _video("motion_twins", seed=2)
    assert np.array_equal(first.frames, again.frames)
    assert np.array_equal(first.amodal_masks, again.amodal_masks)
    assert not np.array_equal(first.frames, other.frames)
    assert first.frames.dtype == np.uint8 and first.frames.shape == (12, *SIZE, 3)


def test_visible_masks_are_disjoint_parts_of_the_amodal_masks():
    video, _ = _video("motion_twins", num_objects=3, seed=5, crossing=True)
    visible, amodal = video.visible_masks, video.amodal_masks
    assert not (visible & ~amodal).any()
    assert (visible.sum(axis=0) <= 1).all()
    for i, obj in enumerate(video.objects):
        assert np.array_equal(video.label_maps == obj.obj_id, visible[i])


def test_crossing_twins_occlude_each_other():
    occluded = 0
    for seed in range(6):
        video, _ = _video("motion_twins", num_objects=2, seed=seed, crossing=True)
        overlap = video.amodal_masks[0] & video.amodal_masks[1]
        occluded += int(overlap.any())
    assert occluded > 0


def test_shapes_are_drawn_in_their_colour():
    video, _ = _video("distinct", num_objects=3, seed=3)
    for i, obj in enumerate(video.objects):
        region = video.visible_masks[i, 0]
        if region.sum() < 20:
            continue
        mean = video.frames[0][region].astype(float).mean(axis=0)
        assert np.abs(mean - np.array(COLOURS[obj.colour])).max() < 40


@pytest.mark.parametrize("leaving", ["exit", "enter"])
def test_a_shape_can_leave_or_enter_the_frame(leaving):
    video, _ = _video("distinct", num_objects=2, seed=4, leaving=leaving)
    on_screen = video.visible_masks.any(axis=(2, 3))  # [N, T]
    if leaving == "exit":
        assert any(row[0] and not row[-1] for row in on_screen)
    else:
        assert any(not row[0] and row[-1] for row in on_screen)


@pytest.mark.parametrize("recipe", RECIPES)
def test_expression_kinds_match_the_scene(recipe):
    for seed in range(4):
        video, rng = _video(recipe, num_objects=4, seed=seed)
        describer = Describer(video, rng)
        expressions = [describer.refer(obj.obj_id) for obj in video.objects] + describer.groups(3)
        for expression in filter(None, expressions):
            targets = [video.object_by_id(i) for i in expression.obj_ids]
            others = [obj for obj in video.objects if obj.obj_id not in expression.obj_ids]
            if expression.kind == "multi":
                assert len(targets) >= 2
                continue
            (target,) = targets
            lookalikes = [obj for obj in others if obj.look == target.look]
            if expression.kind == "appearance":
                assert not lookalikes, expression
            elif expression.kind == "motion":
                assert lookalikes and all(obj.direction != target.direction for obj in lookalikes), expression
                assert expression.needs_motion
            else:
                assert expression.kind == "position", expression
                assert any(obj.direction == target.direction for obj in lookalikes), expression


def test_motion_twins_need_motion_to_be_told_apart():
    video, rng = _video("motion_twins", num_objects=2, seed=7)
    twin_a, twin_b = video.objects
    assert twin_a.look == twin_b.look and twin_a.direction != twin_b.direction
    expressions = [Describer(video, rng).refer(obj.obj_id) for obj in video.objects]
    assert [e.kind for e in expressions] == ["motion", "motion"]
    assert twin_a.direction in expressions[0].text and twin_b.direction in expressions[1].text
    single_frame = Describer(video, rng, frames=[0])
    assert all(single_frame.refer(obj.obj_id) is None or single_frame.refer(obj.obj_id).kind == "position"
               for obj in video.objects)


def test_group_recipe_refers_to_two_and_three_objects():
    video, rng = _video("group3", num_objects=4, seed=1)
    groups = Describer(video, rng).groups(3)
    sizes = sorted(len(g.obj_ids) for g in groups)
    assert 3 in sizes and 2 in sizes
    two = next(g for g in groups if len(g.obj_ids) == 2)
    assert two.needs_motion and {video.object_by_id(i).direction for i in two.obj_ids} == {
        video.object_by_id(two.obj_ids[0]).direction}
