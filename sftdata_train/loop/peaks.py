"""Datasheet bf16 dense peak TFLOP/s of known GPUs, the denominator of ``mfu``.

MFU (PaLM, Chowdhery et al. 2022, appendix B) divides the model FLOP/s by the hardware's
*theoretical* peak. NVIDIA's datasheets quote Tensor Core throughput "with sparsity" (2:4
structured sparsity, twice the dense rate); training runs dense, so the dense figure is used:

====================  ============  ======================================================
GPU                   dense bf16    source (bf16 Tensor Core row; with sparsity / 2)
====================  ============  ======================================================
H100 SXM              989.5         NVIDIA H100 Tensor Core GPU datasheet: 1,979 TFLOPS*
H100 PCIe             756.5         same datasheet: 1,513 TFLOPS*
H200 (SXM)            989.5         NVIDIA H200 Tensor Core GPU datasheet: 1,979 TFLOPS*
A100 (SXM, PCIe)      312           NVIDIA A100 Tensor Core GPU datasheet: 312 / 624* TFLOPS
L40S                  362.05        NVIDIA L40S datasheet: 362.05 / 733* TFLOPS
L4                    121           NVIDIA L4 datasheet: 242 TFLOPS* (121 dense)
A10                   125           NVIDIA A10 datasheet: 125 / 250* TFLOPS
====================  ============  ======================================================

Unlisted devices (and variants with other clocks, e.g. H100 NVL, A10G) give None: pass
``--peak-tflops``. ``mfu_measured`` divides by the throughput of a large bf16 matmul measured
on the device instead (:func:`sftdata_train.loop.metrics.measure_bf16_peak_tflops`), which is what
the hardware actually sustains.
"""

from __future__ import annotations

# (substrings that must all occur in the lower-cased device name, substrings that must not, TFLOP/s)
_TABLE: tuple[tuple[tuple[str, ...], tuple[str, ...], float], ...] = (
    (("h100", "pcie"), (), 756.5),
    (("h100",), ("nvl", "pcie"), 989.5),
    (("h200",), ("nvl",), 989.5),
    (("a100",), (), 312.0),
    (("l40s",), (), 362.05),
    (("l4",), ("l40",), 121.0),
    (("a10",), ("a100", "a10g"), 125.0),
)


def datasheet_bf16_tflops(device_name: str | None) -> float | None:
    """Dense bf16 peak TFLOP/s for a ``torch.cuda.get_device_name()`` string, or None if unknown."""
    if not device_name:
        return None
    name = device_name.lower()
    for needed, excluded, tflops in _TABLE:
        if all(s in name for s in needed) and not any(s in name for s in excluded):
            return tflops
    return None
