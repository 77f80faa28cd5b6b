"""bnorm.Handle: a bnorm_handle_t and every call of the C API on borrowed arrays.

Arguments keep the C API's names and order; outputs are arrays the caller allocates
(bnorm borrows, never allocates), None where the C API takes NULL. Each argument is
checked before the call (shape, dtype and layout against x, per-channel vectors
against C, device against the handle), so a refused call raises and writes nothing;
the C API checks the rest (values, overlap) with the same guarantee.

A handle is used by one thread at a time, as in C. On a CUDA handle calls are
asynchronous on the handle's stream (set_stream); arrays must stay alive and unchanged
until that work is done, as with any CUDA library. Objects borrowed through __dlpack__
are asked to order their pending work before the handle's stream (the protocol's
stream argument); torch tensors are read directly, so bind the handle to
torch.cuda.current_stream() (as bnorm.torch does) or synchronise.
"""
import ctypes

from . import _arrays as A
from ._enums import Activation, Backend, Choice, Op, coerce
from ._errors import Error, InvalidValueError, error_for
from ._library import TensorDesc

_lib = None  # set by the package's __init__


def check(status):
    """Raises the exception of a non-success status, with bnorm_last_error()."""
    if status != 0:
        message = _lib.bnorm_last_error()
        raise error_for(status, message.decode("utf-8", "replace") if message else "")


def stream_pointer(stream):
    """A cudaStream_t as an int from None/0 (the legacy default stream), an int, a
    torch.cuda.Stream (.cuda_stream) or a CuPy stream (.ptr)."""
    if stream is None:
        return 0
    if isinstance(stream, int) and not isinstance(stream, bool):
        return stream
    for attr in ("cuda_stream", "ptr"):
        value = getattr(stream, attr, None)
        if isinstance(value, int):
            return value
    raise TypeError(f"a CUDA stream: expected None, an int, a torch.cuda.Stream or a CuPy stream, "
                    f"got {type(stream).__name__}")


class _Args:
    """Borrows a call's arguments and keeps their producers alive until it returns."""

    def __init__(self, handle):
        self.backend, self.device = handle.backend, handle.device
        self.stream = handle._stream if handle.backend == Backend.CUDA else None
        self.keep = []

    def borrow(self, obj, name):
        try:
            b = A.borrow(obj, self.stream)
        except Error as e:  # the producer's refusal, named after the argument
            raise type(e)(f"{name} is {e.message}") from None
        except TypeError as e:
            raise TypeError(f"{name}: {e}") from None
        self.keep.append(b)
        A.check_device(b, name, self.backend, self.device)
        return b

    def x(self, obj, name="x"):
        """(desc, pointer, borrowed) of the tensor that gives the call its shape."""
        if obj is None:
            raise InvalidValueError(f"{name} is None")
        b = self.borrow(obj, name)
        return A.activation_desc(b, name), b.ptr, b

    def like(self, obj, name, xb, desc, out=False, xname="x"):
        if obj is None:
            return None
        b = self.borrow(obj, name)
        A.check_like(b, name, xb, xname, desc)
        if out:
            A.check_writable(b, name)
        return b.ptr

    def vec(self, obj, name, count, out=False, what="float32 values"):
        if obj is None:
            return None
        b = self.borrow(obj, name)
        A.check_vector(b, name, count, what)
        if out:
            A.check_writable(b, name)
        return b.ptr


class Handle:
    """A bnorm handle. backend: a Backend, its name ("cpu", "cuda") or value; device: the
    CUDA device ordinal (ignored by the CPU backend). Raises NoDeviceError for a CUDA
    handle without a usable GPU. Close it with close() or a with-block (or let it be
    collected)."""

    def __init__(self, backend="cpu", device=0):
        self.backend = coerce(Backend, backend, "backend")
        self.device = int(device)
        self._h = ctypes.c_void_p()
        check(_lib.bnorm_create(ctypes.byref(self._h), int(self.backend), self.device))
        self._stream = 0

    # ---- lifetime and stream --------------------------------------------------------
    def close(self):
        h, self._h = self._h, None
        if h is not None and h.value and _lib is not None:
            check(_lib.bnorm_destroy(h))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - nothing to report to during collection
            pass

    def __repr__(self):
        state = "closed" if self._h is None else f"stream=0x{self._stream:x}"
        return f"bnorm.Handle({self.backend.name.lower()!r}, device={self.device}, {state})"

    @property
    def handle(self):
        """The bnorm_handle_t, as an int (for passing to other C code)."""
        if self._h is None:
            raise InvalidValueError("the handle is closed")
        return self._h.value

    def _hv(self):
        if self._h is None:
            raise InvalidValueError("the handle is closed")
        return self._h

    def set_stream(self, stream):
        """Binds the handle to a CUDA stream (see stream_pointer); the CPU backend accepts
        and ignores it. Work already queued on the old stream is ordered before the new."""
        s = stream_pointer(stream)
        check(_lib.bnorm_set_stream(self._hv(), s or None))
        self._stream = s

    @property
    def stream(self):
        """The bound cudaStream_t as an int (0: the legacy default stream)."""
        out = ctypes.c_void_p()
        check(_lib.bnorm_get_stream(self._hv(), ctypes.byref(out)))
        return out.value or 0

    def get_backend(self):
        out = ctypes.c_int()
        check(_lib.bnorm_get_backend(self._hv(), ctypes.byref(out)))
        return Backend(out.value)

    @property
    def cpu_threads(self):
        """The CPU backend's threads for this handle's calls (what a large call uses now).
        Setting it takes a count >= 1, or 0 for the default (BNORM_CPU_THREADS, else every
        core the process may use); results are the same bits
        for any count. A CUDA handle raises NotSupportedError."""
        out = ctypes.c_int()
        check(_lib.bnorm_get_cpu_threads(self._hv(), ctypes.byref(out)))
        return out.value

    @cpu_threads.setter
    def cpu_threads(self, threads):
        check(_lib.bnorm_set_cpu_threads(self._hv(), int(threads)))

    def describe(self, x):
        """The TensorDesc bnorm sees for an array (after the checks every call makes)."""
        return _Args(self).x(x)[0]

    # ---- batch norm --------------------------------------------------------------------
    def forward_training(self, x, y, gamma=None, beta=None, momentum=0.1, eps=1e-5, running_mean=None,
                         running_var=None, save_mean=None, save_invstd=None):
        """y = (x - mean) / sqrt(var + eps) * gamma + beta with the batch statistics per
        channel; running statistics blended with momentum (unbiased variance); the saved
        mean and 1/sqrt(var + eps) for backward. gamma, beta None: 1 and 0."""
        a = _Args(self)
        d, px, xb = a.x(x)
        c = d.c
        check(_lib.bnorm_forward_training(
            self._hv(), ctypes.byref(d), px, a.like(y, "y", xb, d, out=True), a.vec(gamma, "gamma", c),
            a.vec(beta, "beta", c), momentum, eps, a.vec(running_mean, "running_mean", c, out=True),
            a.vec(running_var, "running_var", c, out=True), a.vec(save_mean, "save_mean", c, out=True),
            a.vec(save_invstd, "save_invstd", c, out=True)))

    def forward_inference(self, x, y, gamma=None, beta=None, running_mean=None, running_var=None, eps=1e-5):
        """y = (x - running_mean) / sqrt(running_var + eps) * gamma + beta (running
        statistics required)."""
        a = _Args(self)
        d, px, xb = a.x(x)
        c = d.c
        check(_lib.bnorm_forward_inference(
            self._hv(), ctypes.byref(d), px, a.like(y, "y", xb, d, out=True), a.vec(gamma, "gamma", c),
            a.vec(beta, "beta", c), a.vec(running_mean, "running_mean", c), a.vec(running_var, "running_var", c),
            eps))

    def backward(self, x, dy, gamma, save_mean, save_invstd, dx, dgamma=None, dbeta=None):
        """dx, dgamma, dbeta of forward_training from its saved statistics."""
        a = _Args(self)
        d, px, xb = a.x(x)
        c = d.c
        check(_lib.bnorm_backward(
            self._hv(), ctypes.byref(d), px, a.like(dy, "dy", xb, d), a.vec(gamma, "gamma", c),
            a.vec(save_mean, "save_mean", c), a.vec(save_invstd, "save_invstd", c),
            a.like(dx, "dx", xb, d, out=True), a.vec(dgamma, "dgamma", c, out=True),
            a.vec(dbeta, "dbeta", c, out=True)))

    def forward_training_fused(self, x, z, y, gamma=None, beta=None, momentum=0.1, eps=1e-5, running_mean=None,
                               running_var=None, save_mean=None, save_invstd=None, act=Activation.RELU):
        """y = act(bn(x) + z), z None for no add; act an Activation or "relu"/"identity"."""
        act = coerce(Activation, act, "act")
        a = _Args(self)
        d, px, xb = a.x(x)
        c = d.c
        check(_lib.bnorm_forward_training_fused(
            self._hv(), ctypes.byref(d), px, a.like(z, "z", xb, d), a.like(y, "y", xb, d, out=True),
            a.vec(gamma, "gamma", c), a.vec(beta, "beta", c), momentum, eps,
            a.vec(running_mean, "running_mean", c, out=True), a.vec(running_var, "running_var", c, out=True),
            a.vec(save_mean, "save_mean", c, out=True), a.vec(save_invstd, "save_invstd", c, out=True), int(act)))

    def forward_inference_fused(self, x, z, y, gamma=None, beta=None, running_mean=None, running_var=None, eps=1e-5,
                                act=Activation.RELU):
        """y = act(bn_inference(x) + z)."""
        act = coerce(Activation, act, "act")
        a = _Args(self)
        d, px, xb = a.x(x)
        c = d.c
        check(_lib.bnorm_forward_inference_fused(
            self._hv(), ctypes.byref(d), px, a.like(z, "z", xb, d), a.like(y, "y", xb, d, out=True),
            a.vec(gamma, "gamma", c), a.vec(beta, "beta", c), a.vec(running_mean, "running_mean", c),
            a.vec(running_var, "running_var", c), eps, int(act)))

    def backward_fused(self, x, y, dy, gamma, save_mean, save_invstd, dx, dz=None, dgamma=None, dbeta=None,
                       act=Activation.RELU):
        """Backward of forward_training_fused: y is its output (required with RELU), dz the
        gradient of z (None when not wanted)."""
        act = coerce(Activation, act, "act")
        a = _Args(self)
        d, px, xb = a.x(x)
        c = d.c
        check(_lib.bnorm_backward_fused(
            self._hv(), ctypes.byref(d), px, a.like(y, "y", xb, d), a.like(dy, "dy", xb, d),
            a.vec(gamma, "gamma", c), a.vec(save_mean, "save_mean", c), a.vec(save_invstd, "save_invstd", c),
            a.like(dx, "dx", xb, d, out=True), a.like(dz, "dz", xb, d, out=True),
            a.vec(dgamma, "dgamma", c, out=True), a.vec(dbeta, "dbeta", c, out=True), int(act)))

    def backward_frozen(self, x, dy, gamma, running_mean, running_var, eps, dx, dgamma=None, dbeta=None):
        """Backward of forward_inference, the running statistics held fixed. x may be None
        when dgamma and dbeta are."""
        a = _Args(self)
        if x is None:
            d, pdy, ref = a.x(dy, "dy")
            px, refname = None, "dy"
        else:
            d, px, ref = a.x(x)
            pdy, refname = a.like(dy, "dy", ref, d), "x"
        c = d.c
        check(_lib.bnorm_backward_frozen(
            self._hv(), ctypes.byref(d), px, pdy, a.vec(gamma, "gamma", c), a.vec(running_mean, "running_mean", c),
            a.vec(running_var, "running_var", c), eps, a.like(dx, "dx", ref, d, out=True, xname=refname),
            a.vec(dgamma, "dgamma", c, out=True), a.vec(dbeta, "dbeta", c, out=True)))

    def fold_into_weights(self, weight, bias, gamma, beta, running_mean, running_var, eps, weight_out, bias_out):
        """weight_out = weight * s, bias_out = (bias - running_mean) * s + beta with
        s = gamma / sqrt(running_var + eps) per output channel: the layer before an
        inference batch norm with the batch norm folded in. weight: (C_out, C_in, ...)
        (a linear layer's (C_out, C_in)); bias None for none."""
        a = _Args(self)
        d, pw, wb = a.x(weight, "weight")
        c = d.n  # the batch norm's channels are the output channels
        check(_lib.bnorm_fold_into_weights(
            self._hv(), ctypes.byref(d), pw, a.vec(bias, "bias", c), a.vec(gamma, "gamma", c),
            a.vec(beta, "beta", c), a.vec(running_mean, "running_mean", c), a.vec(running_var, "running_var", c),
            eps, a.like(weight_out, "weight_out", wb, d, out=True, xname="weight"),
            a.vec(bias_out, "bias_out", c, out=True)))

    # ---- the per-sample norms ------------------------------------------------------------
    def group_norm_forward(self, x, groups, y, gamma=None, beta=None, eps=1e-5, save_mean=None, save_invstd=None):
        """GroupNorm with per-channel gamma, beta; saved statistics n*groups floats."""
        a = _Args(self)
        d, px, xb = a.x(x)
        g = int(groups)
        s = d.n * g
        check(_lib.bnorm_group_norm_forward(
            self._hv(), ctypes.byref(d), g, px, a.like(y, "y", xb, d, out=True), a.vec(gamma, "gamma", d.c),
            a.vec(beta, "beta", d.c), eps, a.vec(save_mean, "save_mean", s, out=True, what="n * groups"),
            a.vec(save_invstd, "save_invstd", s, out=True, what="n * groups")))

    def group_norm_backward(self, x, groups, dy, gamma, save_mean, save_invstd, dx, dgamma=None, dbeta=None):
        a = _Args(self)
        d, px, xb = a.x(x)
        g = int(groups)
        s = d.n * g
        check(_lib.bnorm_group_norm_backward(
            self._hv(), ctypes.byref(d), g, px, a.like(dy, "dy", xb, d), a.vec(gamma, "gamma", d.c),
            a.vec(save_mean, "save_mean", s, what="n * groups"), a.vec(save_invstd, "save_invstd", s, what="n * groups"),
            a.like(dx, "dx", xb, d, out=True), a.vec(dgamma, "dgamma", d.c, out=True),
            a.vec(dbeta, "dbeta", d.c, out=True)))

    def instance_norm_forward(self, x, y, gamma=None, beta=None, eps=1e-5, save_mean=None, save_invstd=None):
        """InstanceNorm (GroupNorm with groups = c); saved statistics n*c floats."""
        a = _Args(self)
        d, px, xb = a.x(x)
        s = d.n * d.c
        check(_lib.bnorm_instance_norm_forward(
            self._hv(), ctypes.byref(d), px, a.like(y, "y", xb, d, out=True), a.vec(gamma, "gamma", d.c),
            a.vec(beta, "beta", d.c), eps, a.vec(save_mean, "save_mean", s, out=True, what="n * c"),
            a.vec(save_invstd, "save_invstd", s, out=True, what="n * c")))

    def instance_norm_backward(self, x, dy, gamma, save_mean, save_invstd, dx, dgamma=None, dbeta=None):
        a = _Args(self)
        d, px, xb = a.x(x)
        s = d.n * d.c
        check(_lib.bnorm_instance_norm_backward(
            self._hv(), ctypes.byref(d), px, a.like(dy, "dy", xb, d), a.vec(gamma, "gamma", d.c),
            a.vec(save_mean, "save_mean", s, what="n * c"), a.vec(save_invstd, "save_invstd", s, what="n * c"),
            a.like(dx, "dx", xb, d, out=True), a.vec(dgamma, "dgamma", d.c, out=True),
            a.vec(dbeta, "dbeta", d.c, out=True)))

    def layer_norm_forward(self, x, y, gamma=None, beta=None, eps=1e-5, save_mean=None, save_invstd=None):
        """LayerNorm over each sample's c*h*w values; gamma, beta: c*h*w floats (any
        shape, e.g. (C, H, W)); saved statistics n floats."""
        a = _Args(self)
        d, px, xb = a.x(x)
        k = d.c * d.h * d.w
        check(_lib.bnorm_layer_norm_forward(
            self._hv(), ctypes.byref(d), px, a.like(y, "y", xb, d, out=True), a.vec(gamma, "gamma", k, what="c*h*w"),
            a.vec(beta, "beta", k, what="c*h*w"), eps, a.vec(save_mean, "save_mean", d.n, out=True, what="n"),
            a.vec(save_invstd, "save_invstd", d.n, out=True, what="n")))

    def layer_norm_backward(self, x, dy, gamma, save_mean, save_invstd, dx, dgamma=None, dbeta=None):
        a = _Args(self)
        d, px, xb = a.x(x)
        k = d.c * d.h * d.w
        check(_lib.bnorm_layer_norm_backward(
            self._hv(), ctypes.byref(d), px, a.like(dy, "dy", xb, d), a.vec(gamma, "gamma", k, what="c*h*w"),
            a.vec(save_mean, "save_mean", d.n, what="n"), a.vec(save_invstd, "save_invstd", d.n, what="n"),
            a.like(dx, "dx", xb, d, out=True), a.vec(dgamma, "dgamma", k, out=True, what="c*h*w"),
            a.vec(dbeta, "dbeta", k, out=True, what="c*h*w")))

    # ---- synchronized batch norm ------------------------------------------------------
    def sync_local_stats(self, x, local_stats):
        """This rank's per-channel Welford states: 3*c floats (count, mean, M2)."""
        a = _Args(self)
        d, px, _ = a.x(x)
        check(_lib.bnorm_sync_local_stats(self._hv(), ctypes.byref(d), px,
                                          a.vec(local_stats, "local_stats", 3 * d.c, out=True, what="3 * c")))

    def sync_merge_stats(self, c, ranks, gathered, global_stats):
        """Merges ranks gathered states (ranks*3*c floats, in rank order) into global_stats."""
        a = _Args(self)
        c, ranks = int(c), int(ranks)
        check(_lib.bnorm_sync_merge_stats(
            self._hv(), c, ranks, a.vec(gathered, "gathered", max(ranks, 0) * 3 * max(c, 0), what="ranks * 3 * c"),
            a.vec(global_stats, "global_stats", 3 * max(c, 0), out=True, what="3 * c")))

    def sync_forward(self, x, y, gamma, beta, global_stats, momentum=0.1, eps=1e-5, running_mean=None,
                     running_var=None, save_mean=None, save_invstd=None):
        a = _Args(self)
        d, px, xb = a.x(x)
        c = d.c
        check(_lib.bnorm_sync_forward(
            self._hv(), ctypes.byref(d), px, a.like(y, "y", xb, d, out=True), a.vec(gamma, "gamma", c),
            a.vec(beta, "beta", c), a.vec(global_stats, "global_stats", 3 * c, what="3 * c"), momentum, eps,
            a.vec(running_mean, "running_mean", c, out=True), a.vec(running_var, "running_var", c, out=True),
            a.vec(save_mean, "save_mean", c, out=True), a.vec(save_invstd, "save_invstd", c, out=True)))

    def sync_backward_sums(self, x, dy, save_mean, local_sums):
        a = _Args(self)
        d, px, xb = a.x(x)
        check(_lib.bnorm_sync_backward_sums(
            self._hv(), ctypes.byref(d), px, a.like(dy, "dy", xb, d), a.vec(save_mean, "save_mean", d.c),
            a.vec(local_sums, "local_sums", 2 * d.c, out=True, what="2 * c")))

    def sync_backward(self, x, dy, gamma, save_mean, save_invstd, global_stats, global_sums, dx, dgamma=None,
                      dbeta=None):
        a = _Args(self)
        d, px, xb = a.x(x)
        c = d.c
        check(_lib.bnorm_sync_backward(
            self._hv(), ctypes.byref(d), px, a.like(dy, "dy", xb, d), a.vec(gamma, "gamma", c),
            a.vec(save_mean, "save_mean", c), a.vec(save_invstd, "save_invstd", c),
            a.vec(global_stats, "global_stats", 3 * c, what="3 * c"),
            a.vec(global_sums, "global_sums", 2 * c, what="2 * c"), a.like(dx, "dx", xb, d, out=True),
            a.vec(dgamma, "dgamma", c, out=True), a.vec(dbeta, "dbeta", c, out=True)))

    # ---- dispatch ---------------------------------------------------------------------
    def set_variant(self, op, spec):
        """Forces a variant spec ("name[:tT][:vV][:sS]") for op on this handle; None clears."""
        op = coerce(Op, op, "op")
        check(_lib.bnorm_set_variant(self._hv(), int(op), None if spec is None else spec.encode()))

    def _desc_of(self, desc, aligned):
        if isinstance(desc, TensorDesc):
            return desc, 1 if aligned is None else int(bool(aligned))
        a = _Args(self)
        d, p, _ = a.x(desc, "desc")
        return d, int(bool((p or 0) % 16 == 0)) if aligned is None else int(bool(aligned))

    def query_variant(self, op, desc, aligned=None, groups=None):
        """(spec, Choice): the variant a call would run, and why. desc: a TensorDesc
        (aligned defaults to True) or an array (aligned: its pointer's). groups: for the
        group-norm operations."""
        op = coerce(Op, op, "op")
        d, al = self._desc_of(desc, aligned)
        buf = ctypes.create_string_buffer(256)
        why = ctypes.c_int()
        if groups is None:
            check(_lib.bnorm_query_variant(self._hv(), int(op), ctypes.byref(d), al, buf, len(buf), ctypes.byref(why)))
        else:
            check(_lib.bnorm_query_variant_grouped(self._hv(), int(op), ctypes.byref(d), int(groups), al, buf,
                                                   len(buf), ctypes.byref(why)))
        return buf.value.decode(), Choice(why.value)

    def list_variants(self, op, desc, aligned=None, groups=None):
        """Every configuration that supports the call, the heuristic's first."""
        op = coerce(Op, op, "op")
        d, al = self._desc_of(desc, aligned)
        count, needed = ctypes.c_int(), ctypes.c_size_t()

        def call(buf, size):
            if groups is None:
                return _lib.bnorm_list_variants(self._hv(), int(op), ctypes.byref(d), al, buf, size,
                                                ctypes.byref(count), ctypes.byref(needed))
            return _lib.bnorm_list_variants_grouped(self._hv(), int(op), ctypes.byref(d), int(groups), al, buf, size,
                                                    ctypes.byref(count), ctypes.byref(needed))

        check(call(None, 0))
        buf = ctypes.create_string_buffer(needed.value + 1)
        check(call(buf, len(buf)))
        return [line for line in buf.value.decode().split("\n") if line]
