"""Small building blocks shared by the heads of every model variant."""
import torch
import torch.nn.functional as F
from torch import nn


class MLP(nn.Module):
    """``num_layers`` Linear layers with ReLU in between: [..., in_dim] -> [..., out_dim]."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        self.num_layers = num_layers
        dims = [input_dim] + [hidden_dim] * (num_layers - 1)
        outs = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims, outs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < self.num_layers - 1:
                x = F.relu(x)
        return x


class FeatureResizer(nn.Module):
    """Linear + LayerNorm(eps 1e-12) + Dropout mapping text features [..., C_in] -> [..., C_out]."""

    def __init__(self, input_feat_size: int, output_feat_size: int, dropout: float = 0.1):
        super().__init__()
        self.fc = nn.Linear(input_feat_size, output_feat_size, bias=True)
        self.layer_norm = nn.LayerNorm(output_feat_size, eps=1e-12)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.layer_norm(self.fc(x)))


class ConvNormAct(nn.Conv2d):
    """Conv2d followed by an optional norm module (saved as ``<name>.norm``) and activation."""

    def __init__(self, *args, norm: nn.Module = None, activation=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.norm = norm
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = super().forward(x)
        if self.norm is not None:
            x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x


def c2_xavier_fill(module: nn.Module) -> None:
    """Caffe2 ``XavierFill`` (kaiming-uniform with a=1) and zero bias, as detectron2/fvcore do."""
    nn.init.kaiming_uniform_(module.weight, a=1)
    if module.bias is not None:
        nn.init.constant_(module.bias, 0)


def with_pos(tensor: torch.Tensor, pos):
    """``tensor + pos`` where ``pos`` may be None."""
    return tensor if pos is None else tensor + pos
