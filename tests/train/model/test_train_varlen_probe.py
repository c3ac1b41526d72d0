"""PyTorch's varlen_attn is called the way each release accepts (fakes with each historical signature).

The signatures (``torch/nn/attention/varlen.py``): 2.10 ``is_causal``/``return_aux``; 2.11
keyword-only ``return_aux``/``scale``/``window_size``; 2.12 adds ``enable_gqa``; 2.13 adds
``seqused_k``/``block_table``/``num_splits``. A fake with the exact signature records what it is
given and computes causal attention per sequence the way the real one would (default scale
``D ** -0.5``; different head counts only with ``enable_gqa=True``), so both the arguments and the
result are checked. The last fake has no causal form at all: ``auto`` must fall through.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sftdata_train.model import attention, torch_varlen

CALLS: list[dict] = []


def _attend(q, k, v, cu, causal, scale, gqa_ok):
    if q.shape[1] != k.shape[1] and not gqa_ok:
        raise ValueError("Expect query and key/value to have the same number of heads")
    rep = q.shape[1] // k.shape[1]
    outs = []
    for a, b in zip(cu[:-1].tolist(), cu[1:].tolist()):
        qq = q[a:b].transpose(0, 1)
        kk = k[a:b].transpose(0, 1).repeat_interleave(rep, 0)
        vv = v[a:b].transpose(0, 1).repeat_interleave(rep, 0)
        outs.append(F.scaled_dot_product_attention(qq, kk, vv, is_causal=causal, scale=scale).transpose(0, 1))
    return torch.cat(outs)


def fake_2_10(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, is_causal=False, return_aux=None):
    CALLS.append(dict(is_causal=is_causal, heads=(query.shape[1], key.shape[1])))
    return _attend(query, key, value, cu_seq_q, is_causal, None, gqa_ok=False)


def fake_2_11(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, return_aux=None, scale=None,
              window_size=(-1, -1)):
    CALLS.append(dict(window_size=tuple(window_size), scale=scale, heads=(query.shape[1], key.shape[1])))
    return _attend(query, key, value, cu_seq_q, tuple(window_size) == (-1, 0), scale, gqa_ok=False)


def fake_2_12(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, return_aux=None, scale=None,
              window_size=(-1, -1), enable_gqa=False):
    CALLS.append(dict(window_size=tuple(window_size), scale=scale, enable_gqa=enable_gqa,
                      heads=(query.shape[1], key.shape[1])))
    return _attend(query, key, value, cu_seq_q, tuple(window_size) == (-1, 0), scale, gqa_ok=enable_gqa)


def fake_2_13(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, return_aux=None, scale=None,
              window_size=(-1, -1), enable_gqa=False, seqused_k=None, block_table=None, num_splits=None):
    return fake_2_12(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, scale=scale, window_size=window_size,
                     enable_gqa=enable_gqa)


def fake_no_causal(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, scale=None):
    raise AssertionError("a varlen_attn without a causal form must never be called")


@pytest.fixture
def install(monkeypatch):
    """Install a fake as torch.nn.attention.varlen.varlen_attn and forget every probe, before and after."""
    import torch.nn.attention.varlen as varlen_mod

    def put(fn):
        monkeypatch.setattr(varlen_mod, "varlen_attn", fn)
        attention.reset_probes()
        CALLS.clear()

    yield put
    monkeypatch.undo()
    attention.reset_probes()
    attention.set_backend("auto")


def _inputs(hq=4, hkv=2, d=8):
    g = torch.Generator().manual_seed(0)
    cu = torch.tensor([0, 5, 6, 19], dtype=torch.int32)
    return (torch.randn(19, hq, d, generator=g), torch.randn(19, hkv, d, generator=g),
            torch.randn(19, hkv, d, generator=g), cu)


def _reference(q, k, v, cu, scale=None):
    return _attend(q, k, v, cu, True, scale, gqa_ok=True)


@pytest.mark.parametrize(
    "fake, causal, has_scale, has_gqa",
    [(fake_2_10, "is_causal", False, False), (fake_2_11, "window_size", True, False),
     (fake_2_12, "window_size", True, True), (fake_2_13, "window_size", True, True)],
)
@pytest.mark.parametrize("scale", [None, 0.25])
@pytest.mark.parametrize("heads", [(4, 2), (4, 4)])
def test_each_release_gets_arguments_it_accepts(install, fake, causal, has_scale, has_gqa, scale, heads):
    install(fake)
    spec = torch_varlen.spec()
    assert (spec.usable, spec.causal, spec.scale, spec.gqa) == (True, causal, has_scale, has_gqa)
    q, k, v, cu = _inputs(*heads)
    # through the backend dispatch (varlen on a CPU tensor is normally routed to sdpa: call it directly)
    fn, sp = attention._varlen_call()
    out = torch_varlen.call(fn, sp, q, k, v, cu, 13, scale)
    assert torch.allclose(out, _reference(q, k, v, cu, scale), atol=1e-5)
    (call,) = CALLS
    if causal == "is_causal":
        assert call["is_causal"] is True
    else:
        assert call["window_size"] == (-1, 0)
    if has_scale:
        assert call["scale"] == scale
    if heads[0] != heads[1]:
        if has_gqa:
            assert call["enable_gqa"] is True and call["heads"] == heads  # native GQA, K/V not copied
        else:
            assert call["heads"] == (heads[0], heads[0])  # K/V repeated to the query heads
    elif has_gqa:
        assert call["enable_gqa"] is False


def test_scale_folded_into_the_query_when_not_accepted(install):
    install(fake_2_10)
    q, k, v, cu = _inputs(4, 4, 16)
    fn, sp = attention._varlen_call()
    default = torch_varlen.call(fn, sp, q, k, v, cu, 13, 16 ** -0.5)  # the kernel's own scale: q untouched
    assert torch.allclose(default, _reference(q, k, v, cu), atol=1e-5)
    odd = torch_varlen.call(fn, sp, q, k, v, cu, 13, 0.1)
    assert torch.allclose(odd, _reference(q, k, v, cu, 0.1), atol=1e-5)
    assert not torch.allclose(odd, default, atol=1e-3)


def test_no_causal_form_falls_through(install, monkeypatch):
    install(fake_no_causal)
    spec = torch_varlen.spec()
    assert spec.available and not spec.usable and "no causal form" in spec.describe()
    assert not attention.has_torch_varlen()
    cuda = torch.device("cuda")  # resolution only reads the device type: no GPU needed
    monkeypatch.setattr(attention, "has_flash_attn", lambda: False)
    assert attention.resolve_backend(cuda, torch.bfloat16, "auto") == "flex"
    monkeypatch.setattr(attention, "has_flash_attn", lambda: True)
    assert attention.resolve_backend(cuda, torch.bfloat16, "auto") == "flash_attn"
    monkeypatch.setattr(attention, "has_flash_attn", lambda: False)
    monkeypatch.setattr(attention, "has_flex", lambda: False)
    assert attention.resolve_backend(cuda, torch.bfloat16, "auto") == "sdpa"
    with pytest.raises(ValueError, match="no causal form"):
        attention.set_backend("varlen")


def test_usable_varlen_is_the_auto_choice_on_cuda_half(install):
    install(fake_2_11)
    cuda = torch.device("cuda")
    assert attention.resolve_backend(cuda, torch.bfloat16, "auto") == "varlen"
    assert attention.resolve_backend(cuda, torch.float32, "auto") == "sdpa"  # kernels need 16-bit inputs
    assert attention.resolve_backend(torch.device("cpu"), torch.bfloat16, "auto") == "sdpa"
    attention.set_backend("varlen")  # accepted: it has a causal form


def test_missing_or_uninspectable_function(install):
    install(None)
    assert not torch_varlen.spec().available
    assert torch_varlen.probe(None).describe().startswith("torch varlen_attn unavailable")
    spec = torch_varlen.probe(math.hypot)  # a builtin without a signature: not guessed
    assert not spec.available and not spec.usable


def test_installed_torch_probe_is_consistent():
    """The real function of the installed torch (2.13 here) probes as usable with every keyword."""
    attention.reset_probes()
    spec = torch_varlen.spec()
    if not spec.available:
        pytest.skip("this torch has no torch.nn.attention.varlen")
    assert spec.usable and spec.causal in ("window_size", "is_causal")
