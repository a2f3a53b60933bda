"""``Conv3d``: ``nn.Conv3d`` with a fast CPU path for the batch-1 volumes of this project.

PyTorch sends a float32 CPU convolution to oneDNN (mkldnn) only when ``N * C * D * H`` exceeds
20480 (a heuristic tuned for 2-D images); below that it uses its im2col ``slow_conv3d``. With
batch 1 and narrow networks (widths 2-16, the tests and CPU demos) every layer falls below the
threshold, and ``slow_conv3d`` is 5-10x slower than oneDNN here (see docs/benchmarks.md); and
for small batch-1 inputs (up to 4 M values) oneDNN's own backward pass was slower than the one
below. For those calls this module computes the forward pass and both gradients with oneDNN
convolutions:

- forward: ``y = conv(x, W) + b``;
- input gradient: a convolution of ``dy`` with the flipped, transposed kernel;
- weight gradient: a convolution of the padded input (channels as batch) with ``dy`` (channels
  as batch) as the kernel, which sums over space and batch.

The path is taken only when a gradient is being recorded (training); inference (``no_grad``,
evaluation, LRP) stays on ``nn.Conv3d``'s path, so its results are unchanged bit for bit.
Everything else (GPU, bf16, batches > 1, large inputs that PyTorch already sends to oneDNN,
1x1 kernels) is ``nn.Conv3d``'s own path. The module is an ``nn.Conv3d`` (same parameters,
``state_dict`` and ``isinstance``); results agree with ``F.conv3d`` to float32 rounding.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

_SLOW_PATH_LIMIT = 20480  # PyTorch's threshold below which it picks slow_conv3d
_SMALL_INPUT = 1 << 22  # up to here oneDNN's own batch-1 backward was slower than ours
_ONEDNN_PATH: contextvars.ContextVar[bool] = contextvars.ContextVar("onednn_path", default=True)
"""Whether :class:`Conv3d` may take the oneDNN path: scoped by :func:`pytorch_conv_path` to
the current thread / asyncio context (no process-wide flag to leak between callers)."""


@contextlib.contextmanager
def pytorch_conv_path() -> Iterator[None]:
    """Within the block, :class:`Conv3d` always uses ``nn.Conv3d``'s own path (for comparison
    or exact PyTorch numerics). Nests, is restored on exit (also on error) and does not affect
    other threads."""
    token = _ONEDNN_PATH.set(False)
    try:
        yield
    finally:
        _ONEDNN_PATH.reset(token)


def _onednn_conv(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: tuple[int, ...]
) -> torch.Tensor:
    return torch.mkldnn_convolution(
        x.contiguous(), weight.contiguous(), bias, padding, (1, 1, 1), (1, 1, 1), 1
    )


class _OneDNNConv3d(torch.autograd.Function):
    """Stride-1, dilation-1, groups-1, zero-padded conv3d with oneDNN forward and backward."""

    @staticmethod
    def forward(ctx, x, weight, bias, padding):  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        ctx.padding = padding
        ctx.has_bias = bias is not None
        return _onednn_conv(x, weight, bias, padding)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        pd, ph, pw = ctx.padding
        grad = grad.contiguous()
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            kd, kh, kw = weight.shape[2:]
            flipped = weight.transpose(0, 1).flip(2, 3, 4)
            grad_x = _onednn_conv(grad, flipped, None, (kd - 1 - pd, kh - 1 - ph, kw - 1 - pw))
        if ctx.needs_input_grad[1]:
            padded = F.pad(x, (pw, pw, ph, ph, pd, pd))
            grad_w = _onednn_conv(
                padded.transpose(0, 1), grad.transpose(0, 1), None, (0, 0, 0)
            ).transpose(0, 1)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum(dim=(0, 2, 3, 4))
        return grad_x, grad_w, grad_b, None


def uses_onednn_path(conv: nn.Conv3d, x: torch.Tensor) -> bool:
    """Whether :class:`Conv3d` takes the oneDNN path for input ``x`` (B, C, D, H, W)."""
    return (
        _ONEDNN_PATH.get()
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and x.dim() == 5
        and x.shape[0] == 1
        and (x.shape[1] * x.shape[2] * x.shape[3] <= _SLOW_PATH_LIMIT or x.numel() <= _SMALL_INPUT)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
        and conv.stride == (1, 1, 1)
        and conv.dilation == (1, 1, 1)
        and isinstance(conv.padding, tuple)
        and any(k > 1 for k in conv.kernel_size)
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
        and not torch.is_autocast_enabled("cpu")
    )


class Conv3d(nn.Conv3d):
    """``nn.Conv3d`` that routes small batch-1 float32 CPU calls through oneDNN (forward and
    backward, see the module docstring); identical parameters, results to float32 rounding."""

    def _conv_forward(
        self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        if (
            torch.is_grad_enabled()
            and (input.requires_grad or weight.requires_grad)
            and weight.dtype == torch.float32
            and uses_onednn_path(self, input)
        ):
            return _OneDNNConv3d.apply(input, weight, bias, tuple(self.padding))
        return super()._conv_forward(input, weight, bias)
