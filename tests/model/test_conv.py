"""The oneDNN path of strokelrp.model.conv.Conv3d equals nn.Conv3d (values and gradients)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from strokelrp.model.conv import Conv3d, pytorch_conv_path, uses_onednn_path


@pytest.mark.parametrize(
    ("cin", "cout", "shape", "kernel", "padding"),
    [
        (6, 4, (5, 8, 7), 3, 1),
        (3, 2, (4, 6, 5), 3, 0),
        (2, 3, (3, 5, 4), 2, 1),
        (4, 4, (19, 9, 9), 3, 1),
    ],
)
def test_values_and_gradients_match_nn_conv3d(cin, cout, shape, kernel, padding) -> None:
    torch.manual_seed(0)
    fast = Conv3d(cin, cout, kernel_size=kernel, padding=padding)
    ref = nn.Conv3d(cin, cout, kernel_size=kernel, padding=padding)
    ref.load_state_dict(fast.state_dict())
    x = torch.randn(1, cin, *shape, requires_grad=True)
    assert uses_onednn_path(fast, x)
    y_fast = fast(x)
    grad = torch.randn_like(y_fast)
    (gx_fast,) = torch.autograd.grad(y_fast, x, grad, retain_graph=True)
    y_fast.backward(grad)
    x_ref = x.detach().clone().requires_grad_()
    y_ref = ref(x_ref)
    y_ref.backward(grad)
    torch.testing.assert_close(y_fast, y_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gx_fast, x_ref.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast.weight.grad, ref.weight.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fast.bias.grad, ref.bias.grad, rtol=1e-5, atol=1e-5)


def test_other_inputs_take_pytorchs_path() -> None:
    conv = Conv3d(2, 2, kernel_size=3, padding=1)
    assert isinstance(conv, nn.Conv3d)
    assert not uses_onednn_path(conv, torch.randn(2, 2, 4, 4, 4))  # batch 2
    assert not uses_onednn_path(conv, torch.randn(1, 2, 4, 4, 4, dtype=torch.float64))
    assert not uses_onednn_path(Conv3d(2, 2, kernel_size=1), torch.randn(1, 2, 4, 4, 4))
    assert not uses_onednn_path(Conv3d(2, 2, 3, stride=2), torch.randn(1, 2, 4, 4, 4))
    with pytorch_conv_path():
        assert not uses_onednn_path(conv, torch.randn(1, 2, 4, 4, 4))
    assert uses_onednn_path(conv, torch.randn(1, 2, 4, 4, 4))
    x = torch.randn(1, 2, 4, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(conv.double()(x), F.conv3d(x, conv.weight, conv.bias, padding=1))


def test_inference_is_bit_identical_to_nn_conv3d() -> None:
    """No gradient recorded (evaluation, LRP): PyTorch's own path, exactly."""
    torch.manual_seed(1)
    conv = Conv3d(3, 4, kernel_size=3, padding=1)
    x = torch.randn(1, 3, 5, 8, 8)
    with torch.no_grad():
        assert torch.equal(conv(x), F.conv3d(x, conv.weight, conv.bias, padding=1))


def test_pytorch_conv_path_is_scoped_and_restored() -> None:
    """The switch nests, is restored after an error, and does not reach another thread."""
    import threading

    conv, x = Conv3d(2, 2, 3, padding=1), torch.rand(1, 2, 4, 4, 4)
    assert uses_onednn_path(conv, x)
    seen: list[bool] = []
    with pytorch_conv_path():
        assert not uses_onednn_path(conv, x)
        with pytorch_conv_path():
            assert not uses_onednn_path(conv, x)
        assert not uses_onednn_path(conv, x)  # the inner exit keeps the outer block's choice
        worker = threading.Thread(target=lambda: seen.append(uses_onednn_path(conv, x)))
        worker.start()
        worker.join()
    assert seen == [True]
    assert uses_onednn_path(conv, x)
    with pytest.raises(RuntimeError), pytorch_conv_path():
        raise RuntimeError("boom")
    assert uses_onednn_path(conv, x)
