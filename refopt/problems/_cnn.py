r"""A small convolutional network for the bundled 8×8 digits, with a hand-derived exact gradient (array API).

Model (``torch.nn`` names; images are the rows of X ``(..., b, 64)`` read row-major as 8×8)::

    Conv2d(1, c1, 3, padding=1) → ReLU → MaxPool2d(2)      8×8 → 4×4
    Conv2d(c1, c2, 3, padding=1) → ReLU → MaxPool2d(2)     4×4 → 2×2
    Flatten (channel, row, column) → Linear(4·c2, classes)
    loss = mean cross-entropy (+ the optional penalty of :mod:`refopt.problems._models`)

``cnn()`` (c1 = 8, c2 = 16, 10 classes) has 80 + 1 168 + 650 = 1 898 parameters.

A 3×3 convolution with zero padding 1 is a matrix product on patches ("im2col"): the patch of
pixel (i, j) holds the padded input at (i + dy, j + dx) for the nine offsets, channel-major
like torch's weight ``(c_out, c_in, 3, 3)``, so ``out = patches Wᵀ + b``. Gradient::

    ∂W = ∂outᵀ patches,  ∂b = Σ ∂out,  ∂patches = ∂out W
    ∂input = Σ over the nine offsets of ∂patches[offset] shifted back (the adjoint of im2col)
    ReLU:    ∂a = ∂r where a > 0, else 0 (torch's choice at 0)
    MaxPool: the window's gradient goes to its first maximum in row-major order (as torch)

Flat layout (``parameters_to_vector`` order)::

    W1 (c1, 1, 3, 3) | b1 (c1) | W2 (c2, c1, 3, 3) | b2 (c2) | W3 (classes, 4·c2) | b3 (classes)

``init(seed)`` draws torch's default distribution (U(±1/√fan_in), fan_in = c_in·9 or 4·c2)
from NumPy's ``default_rng(seed)``.
"""

from __future__ import annotations

from .. import _array
from ._base import check_int, cross_entropy
from ._models import _Classifier, _softmax, _softmax_jvp

__all__ = ["CNN", "cnn"]

_OFFSETS = [(dy, dx) for dy in range(3) for dx in range(3)]


def _pad(xp, x):
    """Zero-pad the two spatial axes of ``x (..., H, W, C)`` by one pixel on every side."""
    *lead, H, W, C = x.shape
    zc = xp.zeros((*lead, H, 1, C), dtype=x.dtype, device=_array.device(x))
    x = xp.concat([zc, x, zc], axis=-2)
    zr = xp.zeros((*lead, 1, W + 2, C), dtype=x.dtype, device=_array.device(x))
    return xp.concat([zr, x, zr], axis=-3)


def _patches(xp, x):
    """``(..., H·W, C·9)``: the 3×3 patches of ``x (..., H, W, C)``, channel-major, offsets row-major."""
    *lead, H, W, C = x.shape
    xp_ = _pad(xp, x)
    cols = xp.stack([xp_[..., dy:dy + H, dx:dx + W, :] for dy, dx in _OFFSETS], axis=-1)   # (..., H, W, C, 9)
    return xp.reshape(cols, (*lead, H * W, C * 9))


def _patches_back(xp, dcols, H, W, C):
    """The adjoint of :func:`_patches`: ``(..., H·W, C·9)`` → ``(..., H, W, C)``."""
    lead = tuple(dcols.shape[:-2])
    d = xp.reshape(dcols, (*lead, H, W, C, 9))
    total = None
    for k, (dy, dx) in enumerate(_OFFSETS):
        piece = _pad(xp, d[..., k])                      # (..., H+2, W+2, C), the patch grid placed at (1, 1)
        # the patch at (i, j) read the padded input at (i + dy, j + dx): shift by (dy - 1, dx - 1)
        piece = _shift(xp, piece, dy, dx)
        total = piece if total is None else total + piece
    return total[..., 1:H + 1, 1:W + 1, :]


def _shift(xp, z, dy, dx):
    """``out[i + dy - 1, j + dx - 1] = z[i, j]`` on an (H+2)×(W+2) grid, zero-filled (|shift| <= 1)."""
    *lead, H2, W2, C = z.shape
    sy, sx = dy - 1, dx - 1
    if sy > 0:
        z = xp.concat([xp.zeros((*lead, sy, W2, C), dtype=z.dtype, device=_array.device(z)), z[..., :H2 - sy, :, :]], axis=-3)
    elif sy < 0:
        z = xp.concat([z[..., -sy:, :, :], xp.zeros((*lead, -sy, W2, C), dtype=z.dtype, device=_array.device(z))], axis=-3)
    if sx > 0:
        z = xp.concat([xp.zeros((*lead, H2, sx, C), dtype=z.dtype, device=_array.device(z)), z[..., :, :W2 - sx, :]], axis=-2)
    elif sx < 0:
        z = xp.concat([z[..., :, -sx:, :], xp.zeros((*lead, H2, -sx, C), dtype=z.dtype, device=_array.device(z))], axis=-2)
    return z


def _relu(xp, a):
    return xp.where(a > 0.0, a, xp.zeros_like(a))


def _pool(xp, r):
    """2×2 max pooling of ``r (..., H, W, C)``; returns the result and the first-maximum masks."""
    *lead, H, W, C = r.shape
    r6 = xp.reshape(r, (*lead, H // 2, 2, W // 2, 2, C))
    cands = [r6[..., :, i, :, j, :] for i in range(2) for j in range(2)]
    m = cands[0]
    for c in cands[1:]:
        m = xp.maximum(m, c)
    masks, taken = [], None
    for c in cands:
        hit = c == m
        if taken is not None:
            hit = xp.logical_and(hit, xp.logical_not(taken))
            taken = xp.logical_or(taken, hit)
        else:
            taken = hit
        masks.append(hit)
    return m, masks


def _pool_select(xp, r, masks):
    """The entries of ``r (..., H, W, C)`` at the pooling masks' positions: ``(..., H/2, W/2, C)``."""
    *lead, H, W, C = r.shape
    r6 = xp.reshape(r, (*lead, H // 2, 2, W // 2, 2, C))
    out = None
    for mk, (i, j) in zip(masks, [(0, 0), (0, 1), (1, 0), (1, 1)]):
        piece = xp.where(mk, r6[..., :, i, :, j, :], xp.zeros_like(r6[..., :, i, :, j, :]))
        out = piece if out is None else out + piece
    return out


def _pool_back(xp, dm, masks):
    zero = xp.zeros_like(dm)
    d = [xp.where(mk, dm, zero) for mk in masks]
    row0 = xp.stack([d[0], d[1]], axis=-2)             # (..., H2, W2, 2, C)
    row1 = xp.stack([d[2], d[3]], axis=-2)
    full = xp.stack([row0, row1], axis=-4)             # (..., H2, 2, W2, 2, C)
    *lead, H2, _, W2, _, C = full.shape
    return xp.reshape(full, (*lead, 2 * H2, 2 * W2, C))


class CNN(_Classifier):
    """Two 3×3 convolutions with ReLU and 2×2 max pooling, then a dense head (module docstring)."""

    def __init__(self, channels: tuple[int, int] = (8, 16), classes: int = 10, l2: float = 0.0, *,
                 penalty: str = "squared"):
        self.name = "cnn"
        if not isinstance(channels, (tuple, list)) or len(channels) != 2:
            raise TypeError(f"cnn: channels must be a pair (c1, c2); got {channels!r}")
        self.c1 = check_int(self.name, "channels[0]", channels[0], 1)
        self.c2 = check_int(self.name, "channels[1]", channels[1], 1)
        self.num_classes = check_int(self.name, "classes", classes, 2)
        self.features = 64
        self._setup(l2, penalty)
        c1, c2, C = self.c1, self.c2, self.num_classes
        self._sizes = (c1 * 9, c1, c2 * c1 * 9, c2, C * 4 * c2, C)
        self.dim = sum(self._sizes)

    def unflatten(self, theta):
        """``(W1 (..., c1, 9), b1, W2 (..., c2, c1·9), b2, W3 (..., C, 4·c2), b3)`` of a flat parameter array."""
        xp = _array.namespace(theta)
        lead = tuple(theta.shape[:-1])
        shapes = [(self.c1, 9), (self.c1,), (self.c2, self.c1 * 9), (self.c2,), (self.num_classes, 4 * self.c2),
                  (self.num_classes,)]
        out, off = [], 0
        for n, s in zip(self._sizes, shapes):
            out.append(xp.reshape(theta[..., off:off + n], (*lead, *s)))
            off += n
        return out

    def _forward(self, xp, theta, X):
        W1, b1, W2, b2, W3, b3 = self.unflatten(theta)
        lead = tuple(X.shape[:-2])
        b = X.shape[-2]
        img = xp.reshape(X, (*lead, b, 8, 8, 1))
        P1 = _patches(xp, img)                                               # (..., b, 64, 9)
        a1 = P1 @ xp.matrix_transpose(W1)[..., None, :, :] + b1[..., None, None, :]   # (..., b, 64, c1)
        lead = tuple(a1.shape[:-3])
        a1 = xp.reshape(a1, (*lead, b, 8, 8, self.c1))
        m1, k1 = _pool(xp, _relu(xp, a1))                                    # (..., b, 4, 4, c1)
        P2 = _patches(xp, m1)                                                # (..., b, 16, c1·9)
        a2 = P2 @ xp.matrix_transpose(W2)[..., None, :, :] + b2[..., None, None, :]
        a2 = xp.reshape(a2, (*lead, b, 4, 4, self.c2))
        m2, k2 = _pool(xp, _relu(xp, a2))                                    # (..., b, 2, 2, c2)
        nl = len(lead)
        flat = xp.reshape(xp.permute_dims(m2, (*range(nl + 1), nl + 3, nl + 1, nl + 2)), (*lead, b, 4 * self.c2))
        logits = flat @ xp.matrix_transpose(W3) + b3[..., None, :]
        return logits, (P1, a1, k1, P2, a2, k2, flat, W2, W3)

    def _logits(self, xp, theta, X):
        return self._forward(xp, theta, X)[0]

    def _loss_grad(self, xp, theta, X, Y):
        logits, (P1, a1, k1, P2, a2, k2, flat, W2, W3) = self._forward(xp, theta, X)
        loss, G = cross_entropy(xp, logits, Y)                               # (..., b, C)
        lead = tuple(G.shape[:-2])
        nl = len(lead)
        b = G.shape[-2]
        c1, c2 = self.c1, self.c2
        dW3 = xp.matrix_transpose(G) @ flat
        db3 = xp.sum(G, axis=-2)
        dflat = G @ W3                                                       # (..., b, 4·c2)
        dm2 = xp.permute_dims(xp.reshape(dflat, (*lead, b, c2, 2, 2)), (*range(nl + 1), nl + 2, nl + 3, nl + 1))
        da2 = _relu_back(xp, a2, _pool_back(xp, dm2, k2))                    # (..., b, 4, 4, c2)
        da2 = xp.reshape(da2, (*lead, b * 16, c2))
        P2f = xp.reshape(P2, (*lead, b * 16, c1 * 9))
        dW2 = xp.matrix_transpose(da2) @ P2f
        db2 = xp.sum(da2, axis=-2)
        dP2 = xp.reshape(da2 @ W2, (*lead, b, 16, c1 * 9))
        dm1 = _patches_back(xp, dP2, 4, 4, c1)                               # (..., b, 4, 4, c1)
        da1 = _relu_back(xp, a1, _pool_back(xp, dm1, k1))                    # (..., b, 8, 8, c1)
        da1 = xp.reshape(da1, (*lead, b * 64, c1))
        P1f = xp.reshape(P1, (*tuple(P1.shape[:-3]), b * 64, 9))
        dW1 = xp.matrix_transpose(da1) @ P1f
        db1 = xp.sum(da1, axis=-2)
        pieces = [dW1, db1, dW2, db2, dW3, db3]
        grad = xp.concat([xp.reshape(xp.broadcast_to(g, (*lead, *g.shape[nl:])) if tuple(g.shape[:nl]) != lead
                                     else g, (*lead, n)) for g, n in zip(pieces, self._sizes)], axis=-1)
        return self._add_penalty(xp, theta, loss, grad)

    def _hvp(self, xp, theta, v, X, y):
        """Exact where the ReLU and max-pooling pattern is locally constant (everywhere but on a set
        of measure zero): Pearlmutter's R-operator. Ṙ denotes the derivative along v = (V1, vb1,
        V2, vb2, V3, vb3); ReLU and pooling pass Ṙ through their fixed masks::

            ȧ1 = P1 V1ᵀ + vb1,  ṁ1 = pool(relu'(a1) ȧ1),  Ṗ2 = patches(ṁ1)
            ȧ2 = Ṗ2 W2ᵀ + P2 V2ᵀ + vb2,  ṁ2 = pool(relu'(a2) ȧ2) → ḟ (flattened)
            ż = ḟ W3ᵀ + f V3ᵀ + vb3,  Ġ = p ⊙ (ż − Σ p ż) / b
            then the backward pass of the gradient differentiated term by term, e.g.
            (∂W2)˙ = (∂a2)˙ᵀ P2 + ∂a2ᵀ Ṗ2,  (∂P2)˙ = (∂a2)˙ W2 + ∂a2 V2,  (∂W3)˙ = Ġᵀ f + Gᵀ ḟ.
        """
        _, Y = self._check(theta, X, y)
        logits, (P1, a1, k1, P2, a2, k2, flat, W2, W3) = self._forward(xp, theta, X)
        V1, vb1, V2, vb2, V3, vb3 = self.unflatten(v)
        _, G = cross_entropy(xp, logits, Y)
        b = G.shape[-2]
        lead = tuple(G.shape[:-2])
        nl = len(lead)
        c1, c2 = self.c1, self.c2
        zero = 0.0
        # forward derivatives
        Ra1 = P1 @ xp.matrix_transpose(V1)[..., None, :, :] + vb1[..., None, None, :]
        Ra1 = xp.reshape(Ra1, (*lead, b, 8, 8, c1))
        Rm1 = _pool_select(xp, xp.where(a1 > zero, Ra1, xp.zeros_like(Ra1)), k1)
        RP2 = _patches(xp, Rm1)
        Ra2 = RP2 @ xp.matrix_transpose(W2)[..., None, :, :] + P2 @ xp.matrix_transpose(V2)[..., None, :, :] \
            + vb2[..., None, None, :]
        Ra2 = xp.reshape(Ra2, (*lead, b, 4, 4, c2))
        Rm2 = _pool_select(xp, xp.where(a2 > zero, Ra2, xp.zeros_like(Ra2)), k2)
        Rflat = xp.reshape(xp.permute_dims(Rm2, (*range(nl + 1), nl + 3, nl + 1, nl + 2)), (*lead, b, 4 * c2))
        Rz = Rflat @ xp.matrix_transpose(W3) + flat @ xp.matrix_transpose(V3) + vb3[..., None, :]
        RG = _softmax_jvp(xp, _softmax(xp, logits), Rz, b)
        # backward pass and its derivative
        hW3 = xp.matrix_transpose(RG) @ flat + xp.matrix_transpose(G) @ Rflat
        hb3 = xp.sum(RG, axis=-2)

        def to_map(dflat):
            dm2 = xp.permute_dims(xp.reshape(dflat, (*lead, b, c2, 2, 2)), (*range(nl + 1), nl + 2, nl + 3, nl + 1))
            return xp.reshape(_relu_back(xp, a2, _pool_back(xp, dm2, k2)), (*lead, b * 16, c2))

        da2 = to_map(G @ W3)
        Rda2 = to_map(RG @ W3 + G @ V3)
        P2f = xp.reshape(P2, (*lead, b * 16, c1 * 9))
        RP2f = xp.reshape(RP2, (*lead, b * 16, c1 * 9))
        hW2 = xp.matrix_transpose(Rda2) @ P2f + xp.matrix_transpose(da2) @ RP2f
        hb2 = xp.sum(Rda2, axis=-2)
        RdP2 = xp.reshape(Rda2 @ W2 + da2 @ V2, (*lead, b, 16, c1 * 9))
        Rda1 = _relu_back(xp, a1, _pool_back(xp, _patches_back(xp, RdP2, 4, 4, c1), k1))
        Rda1 = xp.reshape(Rda1, (*lead, b * 64, c1))
        P1f = xp.reshape(P1, (*tuple(P1.shape[:-3]), b * 64, 9))
        hW1 = xp.matrix_transpose(Rda1) @ P1f
        hb1 = xp.sum(Rda1, axis=-2)
        pieces = [hW1, hb1, hW2, hb2, hW3, hb3]
        hv = xp.concat([xp.reshape(xp.broadcast_to(g, (*lead, *g.shape[nl:])) if tuple(g.shape[:nl]) != lead
                                   else g, (*lead, n)) for g, n in zip(pieces, self._sizes)], axis=-1)
        return hv + self._penalty_hvp(xp, theta, v)

    def init(self, seed: int = 0):
        from ._host import linear_layers_init

        seed = check_int(self.name, "seed", seed, 0)
        return linear_layers_init(seed, [(9, self.c1), (9 * self.c1, self.c2), (4 * self.c2, self.num_classes)])

    def example_batch(self, size: int, seed: int = 0, *, like=None):
        """``(X, y)``: ``size`` images of the digits training set drawn by ``default_rng(seed)`` (without
        replacement up to 1438), X float64 ``(size, 64)`` in [0, 1], y int64 (NumPy, or next to ``like``)."""
        from ._data import load_dataset
        from ._host import rows_batch

        size = check_int(self.name, "size", size, 1)
        seed = check_int(self.name, "seed", seed, 0)
        Xtr, ytr, _, _ = load_dataset("digits")
        if self.num_classes < 10:
            raise ValueError(f"cnn: example_batch draws digits (10 classes); this CNN has {self.num_classes}")
        X, y = rows_batch(Xtr, ytr, size, seed)
        return self._convert(X, y, like)

    def __repr__(self):
        return (f"<refopt problem cnn channels=({self.c1}, {self.c2}) classes={self.num_classes} "
                f"l2={self.l2:g} ({self.penalty}), dim={self.dim}>")


def _relu_back(xp, a, d):
    return xp.where(a > 0.0, d, xp.zeros_like(d))


def cnn(channels: tuple[int, int] = (8, 16), classes: int = 10, l2: float = 0.0, *, penalty: str = "squared") -> CNN:
    """A small CNN for 8×8 images (see :class:`CNN`); the defaults have 1 898 parameters."""
    return CNN(channels, classes, l2, penalty=penalty)
