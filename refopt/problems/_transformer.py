r"""A decoder-only transformer language model with a hand-derived exact gradient (array API).

Model (GPT-2's shape, pre-LayerNorm), for token ids ``X (..., B, T)``, ``T <= context``::

    x⁰ = E[X] + P[:T]                                    token + learned position embeddings
    for each of the ``layers`` blocks:
        h = LN₁(x);  [q k v] = h W_qkvᵀ + b_qkv         split into ``heads`` heads of width d = D / heads
        A = softmax(q kᵀ / √d + causal mask)             (−∞ above the diagonal: position t sees 0..t)
        x = x + (A v, heads concatenated) W_oᵀ + b_o
        x = x + gelu(LN₂(x) W₁ᵀ + b₁) W₂ᵀ + b₂           MLP of width ``mlp`` (default 4 D)
    logits = LN_f(x) W_headᵀ + b_head                     untied output head
    loss = mean over the B·T positions of cross-entropy(logits, y)   y (..., B, T): the next tokens

``LN(x) = γ ⊙ (x − μ) / √(σ² + 1e-5) + β`` over the feature axis (torch's LayerNorm). ``gelu``
is the **tanh approximation** ``½ a (1 + tanh(c (a + 0.044715 a³)))``, ``c = √(2/π)`` -- the
array API has no erf; it is torch's ``gelu(approximate='tanh')`` (and GPT-2's).

Gradient (reverse mode by hand; ``G`` = (softmax − onehot(y)) / (B·T) on the logits)::

    linear  y = x Wᵀ + b:      ∂W = ∂yᵀ x,  ∂b = Σ ∂y,  ∂x = ∂y W
    LN:     x̂ = (x − μ)/s:     ∂γ = Σ ∂y ⊙ x̂,  ∂β = Σ ∂y,  ∂x = (g − mean(g) − x̂ mean(g ⊙ x̂)) / s,  g = γ ⊙ ∂y
    gelu:   ∂a = ∂u ⊙ (½ (1 + t) + ½ a (1 − t²) c (1 + 3·0.044715 a²)),  t = tanh(c (a + 0.044715 a³))
    attention (S = q kᵀ/√d, o = A v):
            ∂A = ∂o vᵀ,  ∂v = Aᵀ ∂o,  ∂S = A ⊙ (∂A − rowsum(∂A ⊙ A)),  ∂q = ∂S k/√d,  ∂k = ∂Sᵀ q/√d
    residual x + f(x): the gradients of both branches add
    embeddings: ∂E = onehot(X)ᵀ ∂x⁰ (summed over positions),  ∂P[t] = Σ_B ∂x⁰[:, t]  (0 for t >= T)

Masked scores are −∞, so their A is exactly 0 and so is their ∂S. The embedding lookup is a
one-hot matrix product (exact: every product is by 1 or 0), which also broadcasts over many
parameter vectors ``theta (..., dim)``.

Flat layout (torch's ``parameters_to_vector`` order for modules declared in this order, the
attention as ``nn.MultiheadAttention``: in_proj weight and bias, then out_proj; heads are
contiguous slices of q, k and v)::

    E (V, D) | P (context, D) | per block: γ₁ β₁ (D) W_qkv (3D, D) b_qkv (3D) W_o (D, D) b_o (D)
    γ₂ β₂ (D) W₁ (M, D) b₁ (M) W₂ (D, M) b₂ (D) | γ_f β_f (D) | W_head (V, D) b_head (V)

The Hessian-vector product (:meth:`Transformer.hvp`) is exact too: the same passes differentiated
along v (Pearlmutter's R-operator, rules in :meth:`Transformer._hvp`), at two to three times the
cost of a gradient.

``transformer()`` (V = 95 printable characters, context 64, D = 32, 2 heads, 1 layer, M = 128)
has 20 991 parameters. ``init(seed)``: GPT-2's initialisation, weights and embeddings
N(0, 0.02²), biases 0, γ = 1, β = 0, from NumPy's ``default_rng(seed)``.
"""

from __future__ import annotations

import math

from .. import _array
from ._base import InputTypeError, Problem, check_int, check_real

__all__ = ["Transformer", "transformer"]

_GELU_C = math.sqrt(2.0 / math.pi)
_GELU_K = 0.044715
LN_EPS = 1e-5


def _gelu(xp, a):
    # in-place updates of fresh temporaries only (never of an input): fewer passes over memory
    z = a * a
    z *= _GELU_K
    z += 1.0
    z *= a
    z *= _GELU_C
    t = xp.tanh(z)
    u = t + 1.0
    u *= a
    u *= 0.5
    return u, t


def _gelu_prime(a, t):
    """gelu'(a) = ½ (1 + t) + ½ c a (1 − t²)(1 + 3k a²), with t = tanh(c (a + k a³)) from the forward pass."""
    w = a * a
    w *= 3.0 * _GELU_K
    w += 1.0
    w *= a
    w *= 0.5 * _GELU_C
    s = t * t
    s -= 1.0
    w *= s                                  # −½ c a (1 − t²)(1 + 3k a²)
    s = t + 1.0
    s *= 0.5
    s -= w
    return s


def _ln(xp, x, g, b):
    mu = xp.mean(x, axis=-1, keepdims=True)
    c = x - mu
    s = xp.sqrt(xp.mean(c * c, axis=-1, keepdims=True) + LN_EPS)
    xh = c / s
    return xh * g[..., None, :] + b[..., None, :], (xh, s)


def _ln_back(xp, dy, g, cache):
    xh, s = cache
    dg = xp.sum(dy * xh, axis=-2)
    db = xp.sum(dy, axis=-2)
    gy = dy * g[..., None, :]
    dx = (gy - xp.mean(gy, axis=-1, keepdims=True) - xh * xp.mean(gy * xh, axis=-1, keepdims=True)) / s
    return dx, dg, db


def _lin(xp, x, W, b):
    y = x @ xp.matrix_transpose(W)
    y += b[..., None, :]
    return y


def _lin_back(xp, dy, x, W):
    return dy @ W, xp.matrix_transpose(dy) @ x, xp.sum(dy, axis=-2)


# -- derivatives along a direction (for the exact Hessian-vector product) -----------------------


def _gelu_second(a, t):
    """gelu''(a) = t' + ½ a t'',  t' = (1 − t²) φ',  t'' = (1 − t²)(φ'' − 2 t φ'²),
    φ = c (a + k a³), φ' = c (1 + 3k a²), φ'' = 6 c k a."""
    phi1 = _GELU_C * (1.0 + (3.0 * _GELU_K) * (a * a))
    one_t2 = 1.0 - t * t
    t1 = one_t2 * phi1
    t2 = one_t2 * ((6.0 * _GELU_C * _GELU_K) * a - 2.0 * t * phi1 * phi1)
    return t1 + 0.5 * a * t2


def _ln_jvp(xp, Rx, cache, g, Vg, Vb):
    """LN's derivative along Rx (and the parameters' direction Vg, Vb): Rx̂ = (Rc − x̂ mean(x̂ Rc)) / s."""
    xh, s = cache
    Rc = Rx - xp.mean(Rx, axis=-1, keepdims=True)
    m = xp.mean(xh * Rc, axis=-1, keepdims=True)                 # = ṡ (the derivative of s)
    Rxh = (Rc - xh * m) / s
    return Rxh * g[..., None, :] + xh * Vg[..., None, :] + Vb[..., None, :], (Rxh, m / s)


def _ln_back_jvp(xp, dy, Rdy, g, Vg, cache, Rcache):
    """The LN backward pass and its derivative: (∂x, (∂x)˙, (∂γ)˙, (∂β)˙)."""
    xh, s = cache
    Rxh, rs = Rcache
    gy = dy * g[..., None, :]
    Rgy = Rdy * g[..., None, :] + dy * Vg[..., None, :]
    m1 = xp.mean(gy, axis=-1, keepdims=True)
    m2 = xp.mean(gy * xh, axis=-1, keepdims=True)
    dx = (gy - m1 - xh * m2) / s
    Rm1 = xp.mean(Rgy, axis=-1, keepdims=True)
    Rm2 = xp.mean(Rgy * xh + gy * Rxh, axis=-1, keepdims=True)
    Rdx = (Rgy - Rm1 - Rxh * m2 - xh * Rm2) / s - dx * rs
    return dx, Rdx, xp.sum(Rdy * xh + dy * Rxh, axis=-2), xp.sum(Rdy, axis=-2)


def _lin_jvp(xp, x, Rx, W, VW, Vb):
    return Rx @ xp.matrix_transpose(W) + x @ xp.matrix_transpose(VW) + Vb[..., None, :]


def _lin_back_jvp(xp, dy, Rdy, x, Rx, W, VW):
    """(∂x, (∂x)˙, (∂W)˙, (∂b)˙) of y = x Wᵀ + b."""
    return (dy @ W, Rdy @ W + dy @ VW,
            xp.matrix_transpose(Rdy) @ x + xp.matrix_transpose(dy) @ Rx, xp.sum(Rdy, axis=-2))


class Transformer(Problem):
    """A decoder-only pre-LN transformer language model (equations and layout in the module docstring).

    Inputs are integer token ids ``X (..., B, T)`` and next tokens ``y`` of the same shape; for the
    :class:`Problem` interface ``features`` is the context length and ``num_classes`` the vocabulary.
    """

    def __init__(self, vocab: int = 95, context: int = 64, width: int = 32, heads: int = 2, layers: int = 1,
                 mlp: int | None = None, *, init_std: float = 0.02):
        self.name = "transformer"
        fn = self.name
        self.vocab = check_int(fn, "vocab", vocab, 2)
        self.context = check_int(fn, "context", context, 1)
        self.width = check_int(fn, "width", width, 1)
        self.heads = check_int(fn, "heads", heads, 1)
        self.layers = check_int(fn, "layers", layers, 0)
        self.mlp = check_int(fn, "mlp", 4 * self.width if mlp is None else mlp, 1)
        self.init_std = check_real(fn, "init_std", init_std, 0.0)
        if self.width % self.heads:
            raise ValueError(f"{fn}: width must be a multiple of heads; got width {self.width}, heads {self.heads}")
        self.features = self.context
        self.num_classes = self.vocab
        V, D, M = self.vocab, self.width, self.mlp
        block = [("ln1_g", (D,)), ("ln1_b", (D,)), ("qkv_w", (3 * D, D)), ("qkv_b", (3 * D,)),
                 ("o_w", (D, D)), ("o_b", (D,)), ("ln2_g", (D,)), ("ln2_b", (D,)),
                 ("fc1_w", (M, D)), ("fc1_b", (M,)), ("fc2_w", (D, M)), ("fc2_b", (D,))]
        spec = [("tok", (V, D)), ("pos", (self.context, D))]
        for i in range(self.layers):
            spec += [(f"{i}.{n}", s) for n, s in block]
        spec += [("lnf_g", (D,)), ("lnf_b", (D,)), ("head_w", (V, D)), ("head_b", (V,))]
        self.layout = []
        off = 0
        for n, s in spec:
            size = math.prod(s)
            self.layout.append((n, s, off, off + size))
            off += size
        self.dim = off

    # -- parameters ------------------------------------------------------------------------

    def unflatten(self, theta) -> dict:
        """``{name: (..., *shape)}`` views of a flat parameter array (names as in :attr:`layout`)."""
        xp = _array.namespace(theta)
        lead = tuple(theta.shape[:-1])
        return {n: xp.reshape(theta[..., a:b], (*lead, *s)) for n, s, a, b in self.layout}

    def init(self, seed: int = 0):
        from ._host import normal_init

        return normal_init(check_int(self.name, "seed", seed, 0), self.layout, self.init_std)

    # -- checks ----------------------------------------------------------------------------

    def _check(self, theta, X, y, *, need_y: bool = True, one_hot: bool = True):
        fn = self.name
        if not _array.is_array(theta):
            raise TypeError(f"{fn}: theta must be an array of shape (..., {self.dim}); got {type(theta).__name__}")
        xp = _array.namespace(theta, what=f"{fn}: theta")
        if not _array.is_real_floating(xp, theta.dtype):
            raise InputTypeError(
                f"{fn}: theta must have a real floating dtype (float32 or float64); got {_array.dtype_name(theta.dtype)}")
        if theta.ndim == 0 or theta.shape[-1] != self.dim:
            raise ValueError(f"{fn}: theta must have shape (..., {self.dim}) (the flat parameter vector has "
                             f"{self.dim} entries); got shape {tuple(theta.shape)}")
        what = "X (token ids)"
        if not _array.is_array(X):
            raise TypeError(f"{fn}: X must be an integer array of token ids of shape (..., B, T); got {type(X).__name__}")
        xp = _array.namespace(theta, X, what=f"{fn}: theta and X")
        if not xp.isdtype(X.dtype, "integral"):
            raise InputTypeError(f"{fn}: X must hold integer token ids; got dtype {_array.dtype_name(X.dtype)}")
        if _array.device(X) != _array.device(theta):
            raise ValueError(f"{fn}: X and theta must be on the same device; got {_array.device(X)} and "
                             f"{_array.device(theta)}")
        if X.ndim < 2 or not 1 <= X.shape[-1] <= self.context or X.shape[-2] == 0:
            raise ValueError(f"{fn}: X must have shape (..., B, T) with B >= 1 sequences of 1 <= T <= "
                             f"{self.context} tokens; got shape {tuple(X.shape)}")
        lead = _array.broadcast_shapes(tuple(theta.shape[:-1]), tuple(X.shape[:-2]))
        if lead is None:
            raise ValueError(f"{fn}: the leading axes of theta {tuple(theta.shape)} and X {tuple(X.shape)} do not broadcast")
        self._range(xp, X, what)
        if y is None:
            if need_y:
                raise TypeError(f"{fn}: y is required: integer next-token ids of the shape of X")
            return xp, None
        if not _array.is_array(y):
            raise TypeError(f"{fn}: y must be an integer array of the shape of X; got {type(y).__name__}")
        xp = _array.namespace(theta, X, y, what=f"{fn}: theta, X and y")
        if not xp.isdtype(y.dtype, "integral"):
            raise InputTypeError(f"{fn}: y must hold integer token ids; got dtype {_array.dtype_name(y.dtype)}")
        if _array.device(y) != _array.device(theta):
            raise ValueError(f"{fn}: y and theta must be on the same device; got {_array.device(y)} and "
                             f"{_array.device(theta)}")
        if y.ndim < 2 or tuple(y.shape[-2:]) != tuple(X.shape[-2:]):
            raise ValueError(f"{fn}: y must have shape (..., B, T) = (..., {X.shape[-2]}, {X.shape[-1]}) like X; "
                             f"got shape {tuple(y.shape)}")
        if _array.broadcast_shapes(lead, tuple(y.shape[:-2])) is None:
            raise ValueError(f"{fn}: the leading axes of y {tuple(y.shape)} do not broadcast with theta and X")
        self._range(xp, y, "y")
        return xp, None

    def _range(self, xp, ids, what):
        low, high = int(xp.min(ids)), int(xp.max(ids))
        if low < 0 or high >= self.vocab:
            raise ValueError(f"{self.name}: {what} must hold token ids in [0, {self.vocab - 1}]; "
                             f"got {low if low < 0 else high}")

    # -- model -----------------------------------------------------------------------------

    def loss_grad(self, theta, X=None, y=None):
        xp, _ = self._check(theta, X, y)
        return self._run(xp, theta, X, y, backward=True)

    def loss(self, theta, X=None, y=None):
        xp, _ = self._check(theta, X, y)
        return self._run(xp, theta, X, y, backward=False)[0]

    def _logits(self, xp, theta, X):
        return self._run(xp, theta, X, None, backward=False)[1]

    def accuracy(self, theta, X, y):
        """The fraction ``(...,)`` of the B·T next tokens predicted right (arg-max of the logits)."""
        xp, _ = self._check(theta, X, y)
        pred = xp.argmax(self._logits(xp, theta, X), axis=-1)
        hit = xp.astype(pred == xp.astype(y, pred.dtype), theta.dtype)
        return xp.mean(xp.reshape(hit, (*hit.shape[:-2], -1)), axis=-1)

    def _onehot(self, xp, ids, dtype):
        classes = xp.arange(self.vocab, dtype=ids.dtype, device=_array.device(ids))
        return xp.astype(ids[..., None] == classes, dtype)

    def _run(self, xp, theta, X, y, *, backward: bool):
        p = self.unflatten(theta)
        dt = theta.dtype
        B, T = X.shape[-2], X.shape[-1]
        D, H = self.width, self.heads
        d = D // H
        scale = 1.0 / math.sqrt(d)
        N = B * T
        # embeddings: (..., B, T, D) -> flat positions (..., N, D)
        oh = self._onehot(xp, xp.reshape(X, (*X.shape[:-2], N)), dt)           # (..., N, V)
        x = oh @ p["tok"]                                                      # (..., N, D)
        lead = tuple(x.shape[:-2])
        pos = p["pos"][..., :T, :]
        x = xp.reshape(xp.reshape(x, (*lead, B, T, D)) + pos[..., None, :, :], (*lead, B, T, D))
        lead = tuple(x.shape[:-3])
        x = xp.reshape(x, (*lead, N, D))
        row = xp.arange(T, device=_array.device(theta))
        causal = row[:, None] >= row[None, :]                                  # (T, T)
        neg_inf = xp.asarray(-math.inf, dtype=dt, device=_array.device(theta))
        caches = []
        for i in range(self.layers):
            q_ = f"{i}."
            h, ln1 = _ln(xp, x, p[q_ + "ln1_g"], p[q_ + "ln1_b"])
            qkv = _lin(xp, h, p[q_ + "qkv_w"], p[q_ + "qkv_b"])                # (..., N, 3D)
            lead = tuple(qkv.shape[:-2])
            qkv = xp.permute_dims(xp.reshape(qkv, (*lead, B, T, 3, H, d)),
                                  (*range(len(lead)), len(lead) + 2, len(lead), len(lead) + 3,
                                   len(lead) + 1, len(lead) + 4))               # (..., 3, B, H, T, d)
            q, k, v = qkv[..., 0, :, :, :, :], qkv[..., 1, :, :, :, :], qkv[..., 2, :, :, :, :]
            q = q * scale                                                       # q/√d: the scores' scale
            S = xp.where(causal, q @ xp.matrix_transpose(k), neg_inf)           # (..., B, H, T, T)
            S -= xp.max(S, axis=-1, keepdims=True)
            A = xp.exp(S)
            A /= xp.sum(A, axis=-1, keepdims=True)
            o = A @ v                                                           # (..., B, H, T, d)
            nl = len(lead)
            o = xp.reshape(xp.permute_dims(o, (*range(nl), nl, nl + 2, nl + 1, nl + 3)), (*lead, N, D))
            x = x + _lin(xp, o, p[q_ + "o_w"], p[q_ + "o_b"])
            h2, ln2 = _ln(xp, x, p[q_ + "ln2_g"], p[q_ + "ln2_b"])
            a = _lin(xp, h2, p[q_ + "fc1_w"], p[q_ + "fc1_b"])
            u, t = _gelu(xp, a)
            x = x + _lin(xp, u, p[q_ + "fc2_w"], p[q_ + "fc2_b"])
            caches.append((h, ln1, q, k, v, A, o, h2, ln2, a, u, t))
        hf, lnf = _ln(xp, x, p["lnf_g"], p["lnf_b"])
        logits = _lin(xp, hf, p["head_w"], p["head_b"])                        # (..., N, V)
        lead = tuple(logits.shape[:-2])
        if y is None:
            return None, xp.reshape(logits, (*lead, B, T, self.vocab))
        Y = self._onehot(xp, xp.reshape(y, (*y.shape[:-2], N)), dt)
        z = logits - xp.max(logits, axis=-1, keepdims=True)
        ez = xp.exp(z)
        sz = xp.sum(ez, axis=-1, keepdims=True)
        loss = xp.mean(xp.sum(Y * (xp.log(sz) - z), axis=-1), axis=-1)
        if not backward:
            return loss, logits
        G = (ez / sz - Y) * (1.0 / N)
        grads = {}
        dhf, grads["head_w"], grads["head_b"] = _lin_back(xp, G, hf, p["head_w"])
        dx, grads["lnf_g"], grads["lnf_b"] = _ln_back(xp, dhf, p["lnf_g"], lnf)
        for i in reversed(range(self.layers)):
            q_ = f"{i}."
            h, ln1, q, k, v, A, o, h2, ln2, a, u, t = caches[i]
            du, grads[q_ + "fc2_w"], grads[q_ + "fc2_b"] = _lin_back(xp, dx, u, p[q_ + "fc2_w"])
            da = du * _gelu_prime(a, t)
            dh2, grads[q_ + "fc1_w"], grads[q_ + "fc1_b"] = _lin_back(xp, da, h2, p[q_ + "fc1_w"])
            dxl, grads[q_ + "ln2_g"], grads[q_ + "ln2_b"] = _ln_back(xp, dh2, p[q_ + "ln2_g"], ln2)
            dx = dx + dxl
            do, grads[q_ + "o_w"], grads[q_ + "o_b"] = _lin_back(xp, dx, o, p[q_ + "o_w"])
            lead = tuple(do.shape[:-2])
            nl = len(lead)
            do = xp.permute_dims(xp.reshape(do, (*lead, B, T, H, d)), (*range(nl), nl, nl + 2, nl + 1, nl + 3))
            dA = do @ xp.matrix_transpose(v)
            dv = xp.matrix_transpose(A) @ do
            dS = dA * A
            dA -= xp.sum(dS, axis=-1, keepdims=True)
            dA *= A                                                             # ∂S = A ⊙ (∂A − rowsum(∂A ⊙ A))
            dS = dA
            dq = dS @ k
            dq *= scale
            dk = xp.matrix_transpose(dS) @ q                                    # q is stored as q/√d
            dqkv = xp.stack([dq, dk, dv], axis=nl)                              # (..., 3, B, H, T, d)
            dqkv = xp.reshape(xp.permute_dims(dqkv, (*range(nl), nl + 1, nl + 3, nl, nl + 2, nl + 4)),
                              (*lead, N, 3 * D))
            dh, grads[q_ + "qkv_w"], grads[q_ + "qkv_b"] = _lin_back(xp, dqkv, h, p[q_ + "qkv_w"])
            dxl, grads[q_ + "ln1_g"], grads[q_ + "ln1_b"] = _ln_back(xp, dh, p[q_ + "ln1_g"], ln1)
            dx = dx + dxl
        lead = tuple(dx.shape[:-2])
        grads["tok"] = xp.matrix_transpose(oh) @ dx                             # (..., V, D)
        dpos = xp.sum(xp.reshape(dx, (*lead, B, T, D)), axis=-3)                # (..., T, D)
        if T < self.context:
            dpos = xp.concat([dpos, xp.zeros((*lead, self.context - T, D), dtype=dt,
                                             device=_array.device(theta))], axis=-2)
        grads["pos"] = dpos
        lead = tuple(loss.shape)
        flat = []
        for n, s, a_, b_ in self.layout:
            g = grads[n]
            if tuple(g.shape[:-len(s)]) != lead:
                g = xp.broadcast_to(g, (*lead, *s))
            flat.append(xp.reshape(g, (*lead, b_ - a_)))
        return loss, xp.concat(flat, axis=-1)

    # -- exact Hessian-vector product --------------------------------------------------------

    def _hvp(self, xp, theta, v, X, y):
        """Exact: Pearlmutter's R-operator. Every forward quantity q gets its derivative q̇ along v
        (v's blocks V_tok, V_pos, V_W, V_b, V_γ, ...), then every backward quantity ∂q gets (∂q)˙;
        the (∂θ)˙ are H v. The rules used (besides the product rule on every matrix product)::

            LN:       x̂˙ = (ċ − x̂ mean(x̂ ċ)) / s,  ṡ = mean(x̂ ċ),  ċ = ẋ − mean(ẋ)
            attention: Ṡ = (q̇ kᵀ + q k̇ᵀ)/√d,  Ȧ = A ⊙ (Ṡ − rowsum(A ⊙ Ṡ))
            gelu:     u̇ = gelu'(a) ȧ,  (∂a)˙ = (∂u)˙ gelu'(a) + ∂u gelu''(a) ȧ
            loss:     Ġ = p ⊙ (ż − Σ p ż) / (B·T)
            LN back:  (∂x)˙ = (ġy − mean(ġy) − x̂˙ mean(gy x̂) − x̂ mean(ġy x̂ + gy x̂˙)) / s − ∂x ṡ / s
            softmax back: (∂S)˙ = Ȧ ⊙ (∂A − r) + A ⊙ ((∂A)˙ − ṙ),  r = rowsum(∂A ⊙ A)
        """
        p, r = self.unflatten(theta), self.unflatten(v)
        dt = theta.dtype
        dev = _array.device(theta)
        B, T = X.shape[-2], X.shape[-1]
        D, H = self.width, self.heads
        d = D // H
        scale = 1.0 / math.sqrt(d)
        N = B * T
        oh = self._onehot(xp, xp.reshape(X, (*X.shape[:-2], N)), dt)

        def embed(tok, pos):
            e = oh @ tok
            ld = tuple(e.shape[:-2])
            e = xp.reshape(e, (*ld, B, T, D)) + pos[..., None, :T, :]
            return xp.reshape(e, (*tuple(e.shape[:-3]), N, D))

        x, Rx = embed(p["tok"], p["pos"]), embed(r["tok"], r["pos"])
        lead = tuple(x.shape[:-2])
        Rx = xp.broadcast_to(Rx, x.shape) if tuple(Rx.shape) != tuple(x.shape) else Rx
        nl = len(lead)
        row = xp.arange(T, device=dev)
        causal = row[:, None] >= row[None, :]
        neg_inf = xp.asarray(-math.inf, dtype=dt, device=dev)

        def heads(z):                       # (..., N, 3D) -> q, k, v (..., B, H, T, d)
            z = xp.permute_dims(xp.reshape(z, (*lead, B, T, 3, H, d)), (*range(nl), nl + 2, nl, nl + 3, nl + 1, nl + 4))
            return z[..., 0, :, :, :, :], z[..., 1, :, :, :, :], z[..., 2, :, :, :, :]

        def split(z):                       # (..., N, D) -> (..., B, H, T, d)
            return xp.permute_dims(xp.reshape(z, (*lead, B, T, H, d)), (*range(nl), nl, nl + 2, nl + 1, nl + 3))

        def merge(z):                       # (..., B, H, T, d) -> (..., N, D)
            return xp.reshape(xp.permute_dims(z, (*range(nl), nl, nl + 2, nl + 1, nl + 3)), (*lead, N, D))

        def merge3(a_, b_, c_):             # three (..., B, H, T, d) -> (..., N, 3D)
            z = xp.stack([a_, b_, c_], axis=nl)
            return xp.reshape(xp.permute_dims(z, (*range(nl), nl + 1, nl + 3, nl, nl + 2, nl + 4)), (*lead, N, 3 * D))

        caches = []
        for i in range(self.layers):
            P_ = {n: p[f"{i}.{n}"] for n in ("ln1_g", "ln1_b", "qkv_w", "qkv_b", "o_w", "o_b", "ln2_g", "ln2_b",
                                              "fc1_w", "fc1_b", "fc2_w", "fc2_b")}
            R_ = {n: r[f"{i}.{n}"] for n in P_}
            h, ln1 = _ln(xp, x, P_["ln1_g"], P_["ln1_b"])
            Rh, Rln1 = _ln_jvp(xp, Rx, ln1, P_["ln1_g"], R_["ln1_g"], R_["ln1_b"])
            q, k, vv = heads(_lin(xp, h, P_["qkv_w"], P_["qkv_b"]))
            Rq, Rk, Rv = heads(_lin_jvp(xp, h, Rh, P_["qkv_w"], R_["qkv_w"], R_["qkv_b"]))
            q, Rq = q * scale, Rq * scale
            S = xp.where(causal, q @ xp.matrix_transpose(k), neg_inf)
            A = xp.exp(S - xp.max(S, axis=-1, keepdims=True))
            A = A / xp.sum(A, axis=-1, keepdims=True)
            RS = Rq @ xp.matrix_transpose(k) + q @ xp.matrix_transpose(Rk)
            RA = A * (RS - xp.sum(A * RS, axis=-1, keepdims=True))
            o, Ro = merge(A @ vv), merge(RA @ vv + A @ Rv)
            x = x + _lin(xp, o, P_["o_w"], P_["o_b"])
            Rx = Rx + _lin_jvp(xp, o, Ro, P_["o_w"], R_["o_w"], R_["o_b"])
            h2, ln2 = _ln(xp, x, P_["ln2_g"], P_["ln2_b"])
            Rh2, Rln2 = _ln_jvp(xp, Rx, ln2, P_["ln2_g"], R_["ln2_g"], R_["ln2_b"])
            a = _lin(xp, h2, P_["fc1_w"], P_["fc1_b"])
            Ra = _lin_jvp(xp, h2, Rh2, P_["fc1_w"], R_["fc1_w"], R_["fc1_b"])
            u, t = _gelu(xp, a)
            gp = _gelu_prime(a, t)
            Ru = gp * Ra
            x = x + _lin(xp, u, P_["fc2_w"], P_["fc2_b"])
            Rx = Rx + _lin_jvp(xp, u, Ru, P_["fc2_w"], R_["fc2_w"], R_["fc2_b"])
            caches.append((P_, R_, h, Rh, ln1, Rln1, q, Rq, k, Rk, vv, Rv, A, RA, o, Ro, h2, Rh2, ln2, Rln2,
                           a, Ra, t, gp, u, Ru))
        hf, lnf = _ln(xp, x, p["lnf_g"], p["lnf_b"])
        Rhf, Rlnf = _ln_jvp(xp, Rx, lnf, p["lnf_g"], r["lnf_g"], r["lnf_b"])
        logits = _lin(xp, hf, p["head_w"], p["head_b"])
        Rz = _lin_jvp(xp, hf, Rhf, p["head_w"], r["head_w"], r["head_b"])
        Y = self._onehot(xp, xp.reshape(y, (*y.shape[:-2], N)), dt)
        e = xp.exp(logits - xp.max(logits, axis=-1, keepdims=True))
        pr = e / xp.sum(e, axis=-1, keepdims=True)
        G = (pr - Y) * (1.0 / N)
        RG = pr * (Rz - xp.sum(pr * Rz, axis=-1, keepdims=True)) * (1.0 / N)
        out = {}
        dhf, Rdhf, out["head_w"], out["head_b"] = _lin_back_jvp(xp, G, RG, hf, Rhf, p["head_w"], r["head_w"])
        dx, Rdx, out["lnf_g"], out["lnf_b"] = _ln_back_jvp(xp, dhf, Rdhf, p["lnf_g"], r["lnf_g"], lnf, Rlnf)
        for i in reversed(range(self.layers)):
            (P_, R_, h, Rh, ln1, Rln1, q, Rq, k, Rk, vv, Rv, A, RA, o, Ro, h2, Rh2, ln2, Rln2,
             a, Ra, t, gp, u, Ru) = caches[i]
            n_ = f"{i}."
            du, Rdu, out[n_ + "fc2_w"], out[n_ + "fc2_b"] = _lin_back_jvp(xp, dx, Rdx, u, Ru, P_["fc2_w"], R_["fc2_w"])
            da = du * gp
            Rda = Rdu * gp + du * _gelu_second(a, t) * Ra
            dh2, Rdh2, out[n_ + "fc1_w"], out[n_ + "fc1_b"] = _lin_back_jvp(xp, da, Rda, h2, Rh2, P_["fc1_w"],
                                                                            R_["fc1_w"])
            dxl, Rdxl, out[n_ + "ln2_g"], out[n_ + "ln2_b"] = _ln_back_jvp(xp, dh2, Rdh2, P_["ln2_g"], R_["ln2_g"],
                                                                           ln2, Rln2)
            dx, Rdx = dx + dxl, Rdx + Rdxl
            do, Rdo, out[n_ + "o_w"], out[n_ + "o_b"] = _lin_back_jvp(xp, dx, Rdx, o, Ro, P_["o_w"], R_["o_w"])
            do, Rdo = split(do), split(Rdo)
            dA = do @ xp.matrix_transpose(vv)
            RdA = Rdo @ xp.matrix_transpose(vv) + do @ xp.matrix_transpose(Rv)
            dv = xp.matrix_transpose(A) @ do
            Rdv = xp.matrix_transpose(RA) @ do + xp.matrix_transpose(A) @ Rdo
            rs = xp.sum(dA * A, axis=-1, keepdims=True)
            Rrs = xp.sum(RdA * A + dA * RA, axis=-1, keepdims=True)
            dS = A * (dA - rs)
            RdS = RA * (dA - rs) + A * (RdA - Rrs)
            dq = (dS @ k) * scale
            Rdq = (RdS @ k + dS @ Rk) * scale
            dk = xp.matrix_transpose(dS) @ q
            Rdk = xp.matrix_transpose(RdS) @ q + xp.matrix_transpose(dS) @ Rq
            dqkv, Rdqkv = merge3(dq, dk, dv), merge3(Rdq, Rdk, Rdv)
            dh, Rdh, out[n_ + "qkv_w"], out[n_ + "qkv_b"] = _lin_back_jvp(xp, dqkv, Rdqkv, h, Rh, P_["qkv_w"],
                                                                          R_["qkv_w"])
            dxl, Rdxl, out[n_ + "ln1_g"], out[n_ + "ln1_b"] = _ln_back_jvp(xp, dh, Rdh, P_["ln1_g"], R_["ln1_g"],
                                                                           ln1, Rln1)
            dx, Rdx = dx + dxl, Rdx + Rdxl
        out["tok"] = xp.matrix_transpose(oh) @ Rdx
        dpos = xp.sum(xp.reshape(Rdx, (*lead, B, T, D)), axis=-3)
        if T < self.context:
            dpos = xp.concat([dpos, xp.zeros((*lead, self.context - T, D), dtype=dt, device=dev)], axis=-2)
        out["pos"] = dpos
        flat = []
        for n, shp, a_, b_ in self.layout:
            g = out[n]
            if tuple(g.shape[:-len(shp)]) != lead:
                g = xp.broadcast_to(g, (*lead, *shp))
            flat.append(xp.reshape(g, (*lead, b_ - a_)))
        return xp.concat(flat, axis=-1)

    # -- data ------------------------------------------------------------------------------

    def example_batch(self, size: int, seed: int = 0, *, like=None):
        """``(X, y)``: ``size`` windows of ``context + 1`` consecutive characters of :func:`char_corpus`
        at seeded offsets; X the first ``context`` token ids, y the next ones (int64 NumPy, or next
        to ``like``)."""
        from ._corpus import DEFAULT_LENGTH, _corpus
        from ._host import windows

        size = check_int(self.name, "size", size, 1)
        seed = check_int(self.name, "seed", seed, 0)
        if self.vocab < 95:
            raise ValueError(f"{self.name}: example_batch draws from the 95-character corpus; vocab is {self.vocab}")
        X, y = windows(_corpus(DEFAULT_LENGTH, 0, 1000, 8), self.context, size, seed)   # the cached, read-only default
        return self._convert(X, y, like, integer_x=True)

    def __repr__(self):
        return (f"<refopt problem transformer vocab={self.vocab} context={self.context} width={self.width} "
                f"heads={self.heads} layers={self.layers} mlp={self.mlp}, dim={self.dim}>")


def transformer(vocab: int = 95, context: int = 64, width: int = 32, heads: int = 2, layers: int = 1,
                mlp: int | None = None, *, init_std: float = 0.02) -> Transformer:
    """A decoder-only transformer language model (see :class:`Transformer`); the defaults are the
    small one (20 991 parameters)."""
    return Transformer(vocab, context, width, heads, layers, mlp, init_std=init_std)
