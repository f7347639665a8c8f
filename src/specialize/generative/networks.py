"""Convolutional encoder and decoder for images, shaped for :class:`SparseTaskVAEModule`.

Both work on flattened images (batch, channels * height * width) in channel-first order, so
that the VAE's losses, its training loop and the latent alignment see the same tensors as for
vector data. The encoder ends with an ``nn.Linear`` to (mean, log-variance) and the decoder
starts with one from the latent, the two layers the alignment rotates through.
"""

from __future__ import annotations

from torch import nn

#: Channels of the successive stride-2 convolutions (the last repeats when more are needed).
CHANNELS = (32, 64, 64, 128)
#: Width of the dense layer between the convolutions and the latent.
DENSE_WIDTH = 256
#: The convolutions halve the image until its side would fall below this.
SMALLEST_SIDE = 4


def n_halvings(height: int, width: int) -> int:
    """How many stride-2 layers fit: halve while both sides stay even and >= ``SMALLEST_SIDE``."""
    count = 0
    while height % 2 == 0 and width % 2 == 0 and min(height, width) // 2 >= SMALLEST_SIDE:
        height, width, count = height // 2, width // 2, count + 1
    return count


def _channels(count: int) -> list[int]:
    return [CHANNELS[min(i, len(CHANNELS) - 1)] for i in range(count)]


def conv_encoder(image_shape: tuple[int, int, int], out_features: int) -> nn.Sequential:
    """(batch, C*H*W) -> (batch, out_features) for images of ``image_shape`` (H, W, C); a
    VAE's encoder has ``out_features = 2 * latent_dim`` (means, then log-variances)."""
    height, width, channels = image_shape
    count = n_halvings(height, width)
    layers: list[nn.Module] = [nn.Unflatten(1, (channels, height, width))]
    previous = channels
    for out in _channels(count):
        layers += [nn.Conv2d(previous, out, 4, stride=2, padding=1), nn.SiLU()]
        previous = out
    side = (height >> count) * (width >> count)
    layers += [
        nn.Flatten(),
        nn.Linear(previous * side, DENSE_WIDTH),
        nn.SiLU(),
        nn.Linear(DENSE_WIDTH, out_features),
    ]
    return nn.Sequential(*layers)


def conv_decoder(image_shape: tuple[int, int, int], latent_dim: int) -> nn.Sequential:
    """(batch, latent_dim) -> (batch, C*H*W): the mirror image of :func:`conv_encoder`."""
    height, width, channels = image_shape
    count = n_halvings(height, width)
    widths = _channels(count)[::-1]
    small = (height >> count, width >> count)
    dense_out = widths[0] * small[0] * small[1] if widths else channels * height * width
    layers: list[nn.Module] = [
        nn.Linear(latent_dim, DENSE_WIDTH),
        nn.SiLU(),
        nn.Linear(DENSE_WIDTH, dense_out),
    ]
    if widths:
        layers += [nn.SiLU(), nn.Unflatten(1, (widths[0], *small))]
        for i, previous in enumerate(widths):
            last = i == len(widths) - 1
            out = channels if last else widths[i + 1]
            layers.append(nn.ConvTranspose2d(previous, out, 4, stride=2, padding=1))
            if not last:
                layers.append(nn.SiLU())
        layers.append(nn.Flatten())
    return nn.Sequential(*layers)
