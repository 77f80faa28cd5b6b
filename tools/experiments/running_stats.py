"""Momentum and running statistics: bnorm_forward_training's running mean and variance
on a stream of batches with a known distribution (the seed's BatchNormAnalysis).

The stream: batch t holds M values per channel drawn from N(mu_t, sigma_t^2), with a
step in both at batch `step_at` (mu 0 -> 2, sigma 1 -> 2 by default). Each of the R
channels of one call is an independent replicate of the same stream, so one call per
batch gives R samples of the running statistics' distribution. The running statistics
start at bnorm's (and PyTorch's) initial values, mean 0 and variance 1, which are the
truth before the step. Calls go through bnorm's C API on the CPU backend (ctypes and
libbnorm.so); every momentum sees the same batches.

What to expect (bnorm.h: r_t = (1 - m) r_{t-1} + m * stat_t, the variance's stat being
the unbiased batch variance, var * M / (M - 1)):
  mean    E[r_t] follows the same recursion on the true values: E_t = (1 - m) E_{t-1} +
          m * truth_t. After a step, the expected error decays as (1 - m)^k, k batches
          on: within 5% of the step after ceil(ln 0.05 / ln(1 - m)) batches.
  spread  Var[r_t] = (1 - m)^2 Var[r_{t-1}] + m^2 Var[stat_t], with Var[batch mean] =
          sigma^2 / M and, for normal data, Var[unbiased batch variance] = 2 sigma^4 / (M - 1);
          in the steady state, m / (2 - m) times those: a smaller momentum averages over
          more batches (about 2/m) and scatters less, but follows a step more slowly.
  bias    none in the steady state: E[running var] = sigma^2 (the biased batch variance
          would give (M - 1) / M sigma^2).

The checks (the command fails if one does not hold), for every momentum:
  tracking  at every batch t >= 1, the replicates' average of each running statistic is
            within 5 standard errors (SD_t / sqrt(R), SD_t from the recursion above) of
            E_t, plus 1e-4 (1 + |E_t|) for float32 rounding. This covers the decay after
            the step, the momentum convention, and the M / (M - 1) factor.
  spread    the replicates' standard deviation, pooled over the last 100 batches, is within
            4 / sqrt(2R) relative of the predicted SD (the standard deviation of a sample
            SD of R normal values is SD / sqrt(2R); pooling over batches only narrows it).
"""
import ctypes
import math

import numpy as np

import report

STREAM_COLUMNS = ["momentum", "batch", "true_mean", "true_var",
                  "run_mean", "run_var",              # replicate 0
                  "avg_run_mean", "avg_run_var",      # average over the replicates
                  "expected_mean", "expected_var",
                  "sd_run_mean", "sd_run_var",        # spread over the replicates
                  "expected_sd_mean", "expected_sd_var"]
SUMMARY_COLUMNS = ["momentum", "k95_predicted", "k95_observed", "max_z_mean", "max_z_var",
                   "spread_ratio_mean", "spread_ratio_var", "steady_avg_var",
                   "steady_expected_var", "biased_var_would_be", "passed"]
SPREAD_WINDOW = 100  # batches at the end of the stream


class _Tensor(ctypes.Structure):  # bnorm_tensor_t
    _fields_ = [("n", ctypes.c_int64), ("c", ctypes.c_int64), ("h", ctypes.c_int64),
                ("w", ctypes.c_int64), ("layout", ctypes.c_int), ("dtype", ctypes.c_int)]


class CpuBatchNorm:
    """bnorm_forward_training on the CPU backend, float32 NCHW (M, R, 1, 1)."""
    BACKEND_CPU, LAYOUT_NCHW, DTYPE_F32, SUCCESS = 0, 0, 0, 0

    def __init__(self, lib_path):
        lib = ctypes.CDLL(lib_path)
        f32p = ctypes.POINTER(ctypes.c_float)
        lib.bnorm_create.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int]
        lib.bnorm_destroy.argtypes = [ctypes.c_void_p]
        lib.bnorm_last_error.restype = ctypes.c_char_p
        lib.bnorm_forward_training.argtypes = [
            ctypes.c_void_p, ctypes.POINTER(_Tensor), ctypes.c_void_p, ctypes.c_void_p,
            f32p, f32p, ctypes.c_float, ctypes.c_float, f32p, f32p, f32p, f32p]
        self._lib = lib
        self._handle = ctypes.c_void_p()
        self._check(lib.bnorm_create(ctypes.byref(self._handle), self.BACKEND_CPU, 0),
                    "bnorm_create")

    def _check(self, status, what):
        if status != self.SUCCESS:
            raise RuntimeError("%s: status %d: %s" % (what, status,
                                                       self._lib.bnorm_last_error().decode()))

    def forward_training(self, x, momentum, running_mean, running_var, eps=1e-5):
        """x: float32 (M, R); running_mean, running_var: float32 (R), updated in place."""
        m, r = x.shape
        desc = _Tensor(m, r, 1, 1, self.LAYOUT_NCHW, self.DTYPE_F32)
        y = np.empty_like(x)
        ptr = lambda a: a.ctypes.data_as(ctypes.POINTER(ctypes.c_float))  # noqa: E731
        self._check(self._lib.bnorm_forward_training(
            self._handle, ctypes.byref(desc), x.ctypes.data, y.ctypes.data, None, None,
            momentum, eps, ptr(running_mean), ptr(running_var), None, None),
            "bnorm_forward_training")

    def close(self):
        if self._handle:
            self._lib.bnorm_destroy(self._handle)
            self._handle = ctypes.c_void_p()


def stream_truth(batches, step_at, mean=(0.0, 2.0), sd=(1.0, 2.0)):
    """True mean and variance of batches 1..batches (index 0: the initial state)."""
    t = np.arange(batches + 1)
    after = t >= step_at
    return np.where(after, mean[1], mean[0]), np.where(after, sd[1], sd[0]) ** 2


def expected(momentum, truth, stat_var, start):
    """E and SD of the EMA r_t = (1 - m) r_{t-1} + m s_t, s_t independent with mean
    truth[t] and variance stat_var[t] (t >= 1), r_0 = start."""
    e = np.empty(len(truth))
    v = np.empty(len(truth))
    e[0], v[0] = start, 0.0
    for t in range(1, len(truth)):
        e[t] = (1 - momentum) * e[t - 1] + momentum * truth[t]
        v[t] = (1 - momentum) ** 2 * v[t - 1] + momentum ** 2 * stat_var[t]
    return e, np.sqrt(v)


def simulate(bn, momenta, true_mean, true_var, batch_size, replicates, seed):
    """Running mean and variance after each batch: {momentum: (mean, var)}, (T+1, R)."""
    rng = np.random.default_rng(seed)
    state = {m: (np.zeros(replicates, np.float32), np.ones(replicates, np.float32))
             for m in momenta}
    trace = {m: (np.empty((len(true_mean), replicates)), np.empty((len(true_mean), replicates)))
             for m in momenta}
    for m in momenta:
        trace[m][0][0], trace[m][1][0] = state[m]
    for t in range(1, len(true_mean)):
        x = (rng.standard_normal((batch_size, replicates), dtype=np.float32)
             * np.float32(math.sqrt(true_var[t])) + np.float32(true_mean[t]))
        for m in momenta:
            bn.forward_training(x, m, *state[m])
            trace[m][0][t], trace[m][1][t] = state[m]
    return trace


def k95(error, step):
    """Batches after the step until |error| <= 5% of the step (error[0]: at the step)."""
    below = np.nonzero(np.abs(error) <= 0.05 * abs(step))[0]
    return int(below[0]) if len(below) else -1


def analyse(momentum, runs, true_mean, true_var, batch_size, step_at):
    """One momentum's stream rows and summary row (with the checks' verdict)."""
    m_runs, v_runs = runs
    r = m_runs.shape[1]
    e_mean, sd_mean = expected(momentum, true_mean, true_var / batch_size, 0.0)
    e_var, sd_var = expected(momentum, true_var, 2 * true_var ** 2 / (batch_size - 1), 1.0)
    avg_mean, avg_var = m_runs.mean(axis=1), v_runs.mean(axis=1)
    obs_sd_mean, obs_sd_var = m_runs.std(axis=1, ddof=1), v_runs.std(axis=1, ddof=1)

    def max_z(avg, e, sd):  # worst tracking error in standard errors, rounding allowance off
        slack = np.maximum(np.abs(avg - e)[1:] - 1e-4 * (1 + np.abs(e[1:])), 0.0)
        return float(np.max(slack / (sd[1:] / math.sqrt(r))))

    def spread_ratio(obs_sd, sd):
        w = slice(-SPREAD_WINDOW, None)
        return float(math.sqrt(np.mean(obs_sd[w] ** 2) / np.mean(sd[w] ** 2)))

    step = true_mean[-1] - true_mean[0]
    summary = {
        "momentum": momentum,
        "k95_predicted": math.ceil(math.log(0.05) / math.log(1 - momentum)),
        # error at k batches after the step: the state after batch step_at - 1 + k
        "k95_observed": k95(avg_mean[step_at - 1:] - true_mean[-1], step),
        "max_z_mean": max_z(avg_mean, e_mean, sd_mean),
        "max_z_var": max_z(avg_var, e_var, sd_var),
        "spread_ratio_mean": spread_ratio(obs_sd_mean, sd_mean),
        "spread_ratio_var": spread_ratio(obs_sd_var, sd_var),
        "steady_avg_var": float(np.mean(avg_var[-SPREAD_WINDOW:])),
        "steady_expected_var": float(np.mean(e_var[-SPREAD_WINDOW:])),
        "biased_var_would_be": float(np.mean(e_var[-SPREAD_WINDOW:]) * (batch_size - 1)
                                     / batch_size),
    }
    spread_tol = 4 / math.sqrt(2 * r)
    summary["passed"] = int(summary["max_z_mean"] <= 5 and summary["max_z_var"] <= 5
                            and abs(summary["spread_ratio_mean"] - 1) <= spread_tol
                            and abs(summary["spread_ratio_var"] - 1) <= spread_tol)
    rows = [dict(momentum=momentum, batch=t, true_mean=float(true_mean[t]),
                 true_var=float(true_var[t]), run_mean=float(m_runs[t, 0]),
                 run_var=float(v_runs[t, 0]), avg_run_mean=float(avg_mean[t]),
                 avg_run_var=float(avg_var[t]), expected_mean=float(e_mean[t]),
                 expected_var=float(e_var[t]), sd_run_mean=float(obs_sd_mean[t]),
                 sd_run_var=float(obs_sd_var[t]), expected_sd_mean=float(sd_mean[t]),
                 expected_sd_var=float(sd_var[t]))
            for t in range(len(true_mean))]
    return rows, summary


def plot(path, rows, momenta, title):
    with report.panels(path, title, nrows=2, ncols=len(momenta), panel_size=(3.9, 3.0),
                       sharey="row") as axes:
        for j, m in enumerate(momenta):
            mine = [r for r in rows if r["momentum"] == m]
            t = np.array([r["batch"] for r in mine])
            col = lambda k: np.array([r[k] for r in mine])  # noqa: E731
            label = (lambda s: s) if j == 0 else (lambda s: None)  # noqa: E731 (one legend)
            for i, (stat, name) in enumerate((("mean", "running mean"), ("var", "running var"))):
                ax = axes[i][j]
                ax.plot(t, col("true_" + stat), color="black", lw=1.2, label=label("truth"))
                avg, sd = col("avg_run_" + stat), col("sd_run_" + stat)
                ax.fill_between(t, avg - sd, avg + sd, color="C0", alpha=0.25, lw=0,
                                label=label("replicates' mean +- 1 SD"))
                ax.plot(t, col("run_" + stat), color="C0", lw=0.7, label=label("one replicate"))
                ax.plot(t, col("expected_" + stat), color="C3", ls="--", lw=1,
                        label=label("expected: EMA of the truth"))
                ax.set_title("momentum %g: %s" % (m, name), fontsize=10)
                if i == 1:
                    ax.set_xlabel("batch")


def run(lib_path, out_dir, momenta=(0.01, 0.1, 0.5, 0.9), batches=600, step_at=200,
        batch_size=16, replicates=1000, seed=42):
    """Writes momentum.csv, momentum_summary.csv and momentum.png; returns the summary rows."""
    true_mean, true_var = stream_truth(batches, step_at)
    bn = CpuBatchNorm(lib_path)
    try:
        trace = simulate(bn, momenta, true_mean, true_var, batch_size, replicates, seed)
    finally:
        bn.close()
    rows, summary = [], []
    for m in momenta:
        r, s = analyse(m, trace[m], true_mean, true_var, batch_size, step_at)
        rows += r
        summary.append(s)
    report.write_csv(out_dir + "/momentum.csv", STREAM_COLUMNS, rows)
    report.write_csv(out_dir + "/momentum_summary.csv", SUMMARY_COLUMNS, summary)
    title = ("bnorm_forward_training's running statistics: %d values per batch from N(0, 1), "
             "from batch %d on N(2, 2^2); %d replicates" % (batch_size, step_at, replicates))
    plot(out_dir + "/momentum.png", rows, momenta, title)
    return summary
