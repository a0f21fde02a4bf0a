"""MultiScaleDeformableAttention: PyTorch path vs reference cases, MSDeformAttn vs the ReferFormer fixture,
implementation dispatch, AMP behaviour, and CUDA parity (GPU tests skip without a GPU and a build)."""
import json
import math
import warnings

import pytest
import torch

from rvos.models.ops import dispatch
from rvos.models.ops import (MSDeformAttn, extension_unavailable_reason, get_msda_impl, is_extension_available,
                        ms_deform_attn, ms_deform_attn_core_pytorch, set_msda_impl)
from rvos.models.ops.check import (Problem, compiled_results, forward_backward, make_problem, max_relative_differences,
                              pytorch_op)

from conftest import REFERENCE_DIR, assert_matches_stats, is_stats_only

CASES_DIR = REFERENCE_DIR / "msdeform"
FIXTURE_DIR = REFERENCE_DIR / "fixtures" / "referformer_tiny"
CASE_NAMES = sorted(json.loads((CASES_DIR / "cases_index.json").read_text())["cases"])
TOLERANCE = {"float64": 1e-10, "float32": 1e-5}
GRAD_KEYS = {"value": "grad_value", "sampling_locations": "grad_sampling_locations",
             "attention_weights": "grad_attention_weights"}
DECODER_RECORDS = {"msdeform_decoder_layer0": "transformer.decoder.layers.0.cross_attn.",
                   "msdeform_decoder_layer1": "transformer.decoder.layers.1.cross_attn."}
ENCODER_RECORD, ENCODER_PREFIX = "msdeform_encoder_layer0", "transformer.encoder.layers.0.self_attn."

HAS_CUDA_BUILD = torch.cuda.is_available() and is_extension_available()
requires_cuda_build = pytest.mark.skipif(
    not HAS_CUDA_BUILD,
    reason="needs a CUDA device and the built extension: "
    + ("no CUDA device" if not torch.cuda.is_available() else str(extension_unavailable_reason())),
)


@pytest.fixture(scope="module")
def cases():
    return torch.load(CASES_DIR / "cases.pt", weights_only=False)


@pytest.fixture(scope="module")
def backbone_records():
    return torch.load(FIXTURE_DIR / "backbone.pt", weights_only=False)


@pytest.fixture(scope="module")
def checkpoint_state():
    return torch.load(FIXTURE_DIR / "checkpoint.pth", weights_only=False)["model"]


@pytest.fixture
def msda_impl():
    """Restores the process-wide implementation setting after the test."""
    previous = get_msda_impl()
    yield set_msda_impl
    set_msda_impl(previous)


def _dispatch_op(value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
    return ms_deform_attn(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)


def _reference_problem(case_data):
    return Problem(case_data["value"], case_data["spatial_shapes"], case_data["level_start_index"],
                   case_data["sampling_locations"], case_data["attention_weights"], case_data["grad_output"])


# --- PyTorch path vs reference cases -----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case_name", CASE_NAMES)
@pytest.mark.parametrize("op", [pytorch_op, _dispatch_op], ids=["core", "dispatch_auto"])
def test_pytorch_path_matches_reference_case(cases, case_name, dtype, op):
    data = cases[case_name][dtype]
    results = forward_backward(op, _reference_problem(data))
    assert results["output"].dtype == data["output"].dtype
    assert (results["output"] - data["output"]).abs().max().item() <= TOLERANCE[dtype]
    for name, key in GRAD_KEYS.items():
        assert (results[name] - data[key]).abs().max().item() <= TOLERANCE[dtype], key


def test_core_rejects_inconsistent_shapes(cases):
    data = cases[CASE_NAMES[0]]["float64"]
    with pytest.raises(ValueError, match="spatial_shapes cover"):
        ms_deform_attn_core_pytorch(data["value"][:, :-1], data["spatial_shapes"], data["sampling_locations"],
                                    data["attention_weights"])
    with pytest.raises(ValueError, match="attention_weights shape"):
        ms_deform_attn_core_pytorch(data["value"], data["spatial_shapes"], data["sampling_locations"],
                                    data["attention_weights"][..., :-1])


# --- MSDeformAttn vs the ReferFormer tiny fixture ----------------------------------------------------------------

def _module_from_checkpoint(state, prefix, n_levels=4, n_points=4):
    weights = {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}
    d_model = weights["value_proj.weight"].shape[0]
    n_heads = weights["attention_weights.weight"].shape[0] // (n_levels * n_points)
    module = MSDeformAttn(d_model, n_levels, n_heads, n_points)
    module.load_state_dict(weights, strict=True)
    return module.eval()


def _record_args(records, name):
    args = list(records[name]["args"])
    if isinstance(args[2], str):  # "identical to msdeform_decoder_layer0['args'][2]"
        args[2] = records["msdeform_decoder_layer0"]["args"][2]
    return args


@pytest.mark.parametrize("record", sorted(DECODER_RECORDS))
def test_module_matches_decoder_record(backbone_records, checkpoint_state, record):
    module = _module_from_checkpoint(checkpoint_state, DECODER_RECORDS[record])
    with torch.no_grad():
        outputs = module(*_record_args(backbone_records, record), return_sampling=True)
    for actual, expected in zip(outputs, backbone_records[record]["output"]):
        assert actual.shape == expected.shape
        assert (actual - expected).abs().max().item() <= 1e-5


def test_module_matches_encoder_record_inside_fixture_model(backbone_records, tmp_path):
    """The encoder record stores its query / input_flatten as statistics only, so its inputs are recaptured by
    running the fixture model on the single video, checked against those statistics, and replayed."""
    from fixture_models import build_fixture_model

    _, model, _, _ = build_fixture_model(FIXTURE_DIR, tmp_path)
    model.eval()
    attention = model.transformer.encoder.layers[0].self_attn
    assert isinstance(attention, MSDeformAttn)
    captured = []
    handle = attention.register_forward_hook(lambda module, args, output: captured.append(args))
    single = torch.load(FIXTURE_DIR / "inputs_single.pt", weights_only=True)
    video = torch.load(FIXTURE_DIR / "inputs.pt", weights_only=True)["videos"][single["video_index"]]
    try:
        with torch.no_grad():
            model([video], single["captions"], single["targets"])
    finally:
        handle.remove()
    record = backbone_records[ENCODER_RECORD]
    args = captured[0]
    for actual, expected in zip(args, record["args"]):
        if is_stats_only(expected):
            assert_matches_stats(actual, expected, atol=1e-5)
        else:
            assert torch.equal(actual, expected)
    with torch.no_grad():
        outputs = attention(*args, return_sampling=True)
    for actual, expected in zip(outputs, record["output"]):
        assert_matches_stats(actual, expected, atol=1e-5)


def test_module_parameter_names_and_shapes():
    module = MSDeformAttn(d_model=64, n_levels=3, n_heads=4, n_points=2)
    shapes = {name: tuple(p.shape) for name, p in module.named_parameters()}
    assert shapes == {
        "sampling_offsets.weight": (4 * 3 * 2 * 2, 64), "sampling_offsets.bias": (4 * 3 * 2 * 2,),
        "attention_weights.weight": (4 * 3 * 2, 64), "attention_weights.bias": (4 * 3 * 2,),
        "value_proj.weight": (64, 64), "value_proj.bias": (64,),
        "output_proj.weight": (64, 64), "output_proj.bias": (64,),
    }


def test_module_initialisation():
    n_heads, n_levels, n_points, d_model = 8, 4, 3, 32
    module = MSDeformAttn(d_model, n_levels, n_heads, n_points)
    bias = module.sampling_offsets.bias.detach().view(n_heads, n_levels, n_points, 2)
    for head in range(n_heads):
        angle = 2 * math.pi * head / n_heads
        direction = torch.tensor([math.cos(angle), math.sin(angle)])
        direction = direction / direction.abs().max()
        for point in range(n_points):
            expected = (point + 1) * direction
            assert torch.allclose(bias[head, :, point], expected.expand(n_levels, 2), atol=1e-6)
    assert torch.count_nonzero(module.sampling_offsets.weight) == 0
    assert torch.count_nonzero(module.attention_weights.weight) == 0
    assert torch.count_nonzero(module.attention_weights.bias) == 0
    for projection in (module.value_proj, module.output_proj):
        bound = math.sqrt(6.0 / (2 * d_model))
        assert projection.weight.abs().max() <= bound and projection.weight.std() > bound / 4
        assert torch.count_nonzero(projection.bias) == 0


def _random_module_inputs(n=2, len_q=3, d_model=16, shapes=((4, 5), (2, 3)), ref_dim=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    spatial_shapes = torch.tensor(shapes, dtype=torch.int64)
    areas = spatial_shapes.prod(1)
    level_start_index = torch.cat([areas.new_zeros(1), areas.cumsum(0)[:-1]])
    query = torch.randn(n, len_q, d_model, generator=generator)
    reference = torch.rand(n, len_q, len(shapes), ref_dim, generator=generator)
    flatten = torch.randn(n, int(areas.sum()), d_model, generator=generator)
    return query, reference, flatten, spatial_shapes, level_start_index


def test_module_padding_positions_do_not_contribute():
    torch.manual_seed(0)
    module = MSDeformAttn(d_model=16, n_levels=2, n_heads=2, n_points=2).eval()
    query, reference, flatten, shapes, starts = _random_module_inputs()
    padding = torch.zeros(flatten.shape[:2], dtype=torch.bool)
    padding[0, 3:9] = True
    padding[1, -4:] = True
    changed = flatten.clone()
    changed[padding] = torch.randn(int(padding.sum()), flatten.shape[-1])
    with torch.no_grad():
        out = module(query, reference, flatten, shapes, starts, padding)
        out_changed = module(query, reference, changed, shapes, starts, padding)
        out_unmasked = module(query, reference, changed, shapes, starts)
    assert torch.equal(out, out_changed)
    assert not torch.allclose(out, out_unmasked)


def test_module_rejects_bad_inputs():
    module = MSDeformAttn(d_model=16, n_levels=2, n_heads=2, n_points=2)
    query, reference, flatten, shapes, starts = _random_module_inputs(ref_dim=3)
    with pytest.raises(ValueError, match="must be 2 or 4"):
        module(query, reference, flatten, shapes, starts)
    query, reference, flatten, shapes, starts = _random_module_inputs()
    with pytest.raises(ValueError, match="cover"):
        module(query, reference, flatten[:, :-1], shapes, starts)
    with pytest.raises(ValueError, match="divisible"):
        MSDeformAttn(d_model=10, n_heads=4)


# --- dispatch -----------------------------------------------------------------------------------------------------

def test_set_msda_impl_validates_and_round_trips(msda_impl):
    for impl in ("pytorch", "cuda", "auto"):
        msda_impl(impl)
        assert get_msda_impl() == impl
    with pytest.raises(ValueError, match="msda_impl must be one of"):
        msda_impl("triton")


@pytest.mark.parametrize("impl", ["auto", "pytorch"])
def test_cpu_tensors_use_pytorch_path_without_warning(msda_impl, impl):
    msda_impl(impl)
    problem = make_problem(dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        output = ms_deform_attn(*problem.inputs())
    expected = ms_deform_attn_core_pytorch(problem.value, problem.spatial_shapes, problem.sampling_locations,
                                           problem.attention_weights)
    assert torch.equal(output, expected)


def test_forcing_cuda_on_cpu_tensors_raises(msda_impl):
    msda_impl("cuda")
    problem = make_problem()
    with pytest.raises(RuntimeError, match="needs CUDA tensors") as error:
        ms_deform_attn(*problem.inputs())
    if not is_extension_available():
        assert "pip install -e ." in str(error.value) and "python -m rvos.models.ops.build" in str(error.value)


def test_cuda_fallback_warning_is_emitted_once_per_process(monkeypatch):
    """The real warning helper, called twice with every warning shown: only the first call warns."""
    monkeypatch.setattr(dispatch, "_fallback_warned", False)  # as in a fresh process; restored afterwards
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dispatch.warn_cuda_fallback_once("extension missing (first)")
        dispatch.warn_cuda_fallback_once("extension missing (second)")
    assert [w.category for w in caught] == [RuntimeWarning]
    assert "extension missing (first)" in str(caught[0].message) and "pure-PyTorch" in str(caught[0].message)


# --- AMP / dtypes -------------------------------------------------------------------------------------------------

def test_cpu_autocast_bf16_returns_float32(msda_impl):
    msda_impl("auto")
    problem = make_problem(dtype=torch.float32, seed=3)
    reduced = problem.to(dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        results = forward_backward(ms_deform_attn, reduced)
    assert results["output"].dtype == torch.float32
    assert all(results[name].dtype == torch.bfloat16 for name in GRAD_KEYS)
    # computed in float32 from the bf16 values ...
    exact = forward_backward(pytorch_op, reduced.to(dtype=torch.float32))
    assert (results["output"] - exact["output"]).abs().max().item() <= 1e-6
    # ... hence close to the float32 result (inputs differ by bf16 rounding, relative 2**-9)
    full = forward_backward(pytorch_op, problem)
    assert (results["output"] - full["output"]).abs().max().item() <= 2e-2


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_reduced_precision_without_autocast_keeps_input_dtype(msda_impl, dtype):
    msda_impl("auto")
    reduced = make_problem(dtype=torch.float32, seed=4).to(dtype=dtype)
    output = ms_deform_attn(*reduced.inputs())
    assert output.dtype == dtype
    expected = pytorch_op(*reduced.to(dtype=torch.float32).inputs()).to(dtype)
    assert torch.equal(output, expected)


# --- CUDA (skipped without a GPU and a build) ---------------------------------------------------------------------

def _gpu_problem(batch=3, seed=0):
    return make_problem(batch=batch, num_query=12, n_heads=4, d_head=40, level_shapes=((8, 10), (4, 5), (2, 3)),
                        n_points=4, loc_range=(-0.2, 1.2), seed=seed)


@requires_cuda_build
@pytest.mark.parametrize("dtype,tolerance", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_cuda_kernels_match_pytorch_path(dtype, tolerance):
    problem = _gpu_problem().to("cuda", dtype)
    from rvos.models.ops.extension import get_extension

    differences = max_relative_differences(compiled_results(get_extension(), problem),
                                           forward_backward(pytorch_op, problem))
    assert max(differences.values()) <= tolerance, differences


@requires_cuda_build
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_autocast_reduced_inputs_match_pytorch_path(msda_impl, dtype):
    problem = _gpu_problem(seed=1).to("cuda", dtype)
    results = {}
    for impl in ("cuda", "pytorch"):
        msda_impl(impl)
        with torch.autocast("cuda", dtype=dtype):
            results[impl] = forward_backward(ms_deform_attn, problem)
    assert results["cuda"]["output"].dtype == torch.float32
    differences = max_relative_differences(results["cuda"], results["pytorch"])
    assert max(differences.values()) <= 1e-5, differences


@requires_cuda_build
def test_cuda_path_gradcheck_float64(msda_impl):
    msda_impl("cuda")
    problem = make_problem(batch=2, num_query=3, level_shapes=((4, 3), (2, 2)), n_points=2, device="cuda")
    inputs = (problem.value.requires_grad_(), problem.spatial_shapes, problem.level_start_index,
              problem.sampling_locations.requires_grad_(), problem.attention_weights.requires_grad_())
    # nondet_tol: grad_value is accumulated with atomicAdd, so two backward passes may differ in the last bits
    assert torch.autograd.gradcheck(_dispatch_op, inputs, eps=1e-6, atol=1e-7, nondet_tol=1e-12)


@requires_cuda_build
@pytest.mark.parametrize("batch,im2col_step", [(5, 2), (6, 4), (7, 64), (12, 5)])
def test_cuda_any_batch_size_with_im2col_step(batch, im2col_step):
    from rvos.models.ops.extension import get_extension

    problem = _gpu_problem(batch=batch, seed=2).to("cuda", torch.float64)
    chunked = compiled_results(get_extension(), problem, im2col_step)
    whole = compiled_results(get_extension(), problem, batch)
    differences = max_relative_differences(chunked, whole)
    assert max(differences.values()) <= 1e-12, differences


@requires_cuda_build
def test_auto_dispatch_uses_cuda_extension_without_warning(msda_impl):
    msda_impl("auto")
    problem = _gpu_problem().to("cuda", torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        output = ms_deform_attn(*problem.inputs())
    from rvos.models.ops.extension import get_extension

    assert torch.equal(output, get_extension().forward(*problem.inputs(), 64))


def test_loader_imports_the_module_that_setup_py_builds():
    from rvos.models.ops import build, extension

    assert extension.PREBUILT_MODULE == f"rvos.models.ops.{build.AOT_MODULE_NAME}"
