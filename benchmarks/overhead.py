"""Cost of IDO's bookkeeping, measured in one process (issue: "no per-batch host syncs").

    python benchmarks/overhead.py [--quick] [--device cpu|cuda] [--out FILE | --write-docs]
    python benchmarks/overhead.py --device cuda --backbone resnet50 --resolution 224 --batch 128 \
        --precision bf16 --channels_last        # the GPU comparison (likewise --backbone ViT-B)

1. Training-step time: a plain cross-entropy loop vs the stage-1 step (wrong events + predictions,
   through the real engine), and a two-view cross-entropy loop vs the stage-2 step (global and
   class-wise BMM lookup + the dynamic loss).  Every round runs each variant once (in a rotating
   order); a ratio is the median over rounds of the two times measured in the same round.
   ``--precision`` and ``--channels_last`` apply to the plain loops as to the engine (a user's plain
   timm training would use them too); images/s = batch (per view) / step time.
2. Per-batch loss weights from the BMM (counts of a batch -> the weights of its three loss terms on
   the device): the lookup table vs scipy per batch as the official code does it (vectorised scipy
   for the global mixture, one scipy call per sample for the class-wise one; then tau1, tau2, F1, F2
   to the device and the weights computed there, as the official loss does).
   The same variants are also timed with the network taken out (fixed logits), which measures what
   IDO adds to a step (bookkeeping, lookup, loss and its backward) in microseconds.
3. BMM fit time: 20 EM iterations on 1,000,000 counts (global) and on 100 classes.

The report is printed; ``--out FILE`` writes it into FILE, ``--write-docs`` into docs/performance.md, each in
place of the earlier run's section (between its markers), the rest of the page kept.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TQDM_DISABLE", "1")  # the engine's progress bars would flood the report

from model import create_model  # noqa: E402
from utils.method.sample_weights import SampleWeights  # noqa: E402
from utils.method.steps import VIEWS, loss_and_terms, stage1_step, stage2_step  # noqa: E402
from utils.method.bmm import BetaMixture  # noqa: E402
from utils.core.distributed import Runtime  # noqa: E402
from utils.training.engine import Precision, train_one_epoch  # noqa: E402
from benchmarks.docs_output import add_output_options, output_path, write_section  # noqa: E402
from utils.method.losses import loss_weights  # noqa: E402
from utils.method.wrong_events import EpochPredictions, WrongEvents  # noqa: E402

BEGIN, END = "<!-- overhead.py: begin -->", "<!-- overhead.py: end -->"  # its section of the page
DOCS_PAGE = os.path.join("docs", "performance.md")


class _Cfg:  # the default config's stage-2 loss
    entropy_weight = "confidence"
    noisy_weight = "one_minus_clean"


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _plain_loop(model, optimizer, batches, two_views: bool, precision: Precision):
    """What a user writes without IDO: forward, cross-entropy, backward, step (with AMP)."""
    model.train()
    for images, labels, _ in batches:
        with precision.autocast():
            if two_views:
                _, lw = model(images[0])
                _, ls = model(images[1])
                loss = F.cross_entropy(lw.float(), labels) + F.cross_entropy(ls.float(), labels)
            else:
                _, logits = model(images)
                loss = F.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        precision.scaler.scale(loss).backward()
        precision.scaler.step(optimizer)
        precision.scaler.update()


def _ido_steps(*, n: int, noisy_labels: np.ndarray, classes: int, device) -> tuple:
    """The stage-1 step and the stage-2 steps ({"global": ..., "class": ...}) over ``n`` samples, with
    mixtures fitted to random counts 0-5."""
    stage1 = stage1_step(WrongEvents(n, device=device), EpochPredictions(n, device=device))
    stage2 = {}
    for kind in ("global", "class"):
        w = SampleWeights(class_wise=kind == "class", noisy_labels=noisy_labels, num_classes=classes, device=device,
                          new_events=VIEWS, noisy_weight=_Cfg.noisy_weight)
        w.fit(np.random.default_rng(0).integers(0, 6, n), iterations=20)
        stage2[kind] = stage2_step(WrongEvents(n, device=device), w, entropy_weight=_Cfg.entropy_weight)
    return stage1, stage2


def time_steps(variants: dict, *, rounds: int, device) -> dict[str, list[float]]:
    """Seconds per step of each variant in every round (after one warm-up call of each).

    Every round runs each variant once, in an order rotated by one place per round: no variant
    always runs first or always follows the same one, so a shared machine's slow drifts and the
    after-effects of a variant (caches, allocator) hit all of them alike.
    """
    names = list(variants)
    for fn, _ in variants.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            fn, n_steps = variants[name]
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            times[name].append((time.perf_counter() - start) / n_steps)
    return times


def _round_ratios(times: dict[str, list[float]], variant: str, baseline: str) -> list[float]:
    return [v / b for v, b in zip(times[variant], times[baseline])]


def paired_ratio(times: dict[str, list[float]], variant: str, baseline: str) -> float:
    """Median over rounds of ``variant / baseline`` measured in the same round: the machine's state
    is shared by both halves of every pair, which makes this steadier than a ratio of medians."""
    return statistics.median(_round_ratios(times, variant, baseline))


def round_range(times: dict[str, list[float]], variant: str, baseline: str) -> str:
    per_round = _round_ratios(times, variant, baseline)
    return f"{min(per_round):.3f}-{max(per_round):.3f}"


def step_benchmark(*, device, backbone: str, resolution: int, batch: int, classes: int, steps: int, rounds: int,
                   precision: str = "fp32", channels_last: bool = False):
    torch.manual_seed(0)
    n = steps * batch
    runtime = Runtime(device=device)
    amp = Precision.create(precision, device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = create_model(backbone, num_classes=classes, img_size=resolution).to(device, memory_format=memory_format)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    x = torch.randn(steps, batch, 3, resolution, resolution, device=device)
    x2 = torch.randn(steps, batch, 3, resolution, resolution, device=device)
    if channels_last:  # batches arrive in the layout the engine would convert them to
        x, x2 = (v.flatten(0, 1).contiguous(memory_format=torch.channels_last).view_as(v) for v in (x, x2))
    y = torch.randint(0, classes, (steps, batch), device=device)
    idx = torch.randperm(n, device=device).view(steps, batch)
    one_view = [(x[i], y[i], idx[i]) for i in range(steps)]
    two_view = [((x[i], x2[i]), y[i], idx[i]) for i in range(steps)]
    labels = torch.randint(0, classes, (n,)).numpy()

    s1, weights = _ido_steps(n=n, noisy_labels=labels, classes=classes, device=device)

    def engine(step, batches):
        return lambda: train_one_epoch(model=model, loader=batches, optimizer=optimizer, step=step,
                                       precision=amp, runtime=runtime, epoch=0, desc="bench",
                                       channels_last=channels_last)

    variants = {
        "plain CE": (lambda: _plain_loop(model, optimizer, one_view, False, amp), steps),
        "stage 1": (engine(s1, one_view), steps),
        "two-view CE": (lambda: _plain_loop(model, optimizer, two_view, True, amp), steps),
        "stage 2 global": (engine(weights["global"], two_view), steps),
        "stage 2 class": (engine(weights["class"], two_view), steps),
    }
    return time_steps(variants, rounds=rounds, device=device)


def official_global_predict(bmm: BetaMixture, counts: np.ndarray) -> tuple:
    """The official per-batch evaluation: scipy on the host for the batch (global mixture)."""
    u = bmm.normalise(counts)
    a, b, p = bmm.alpha[0], bmm.beta[0], bmm.pi[0]
    l1, l2 = p[0] * stats.beta.pdf(u, a[0], b[0]), p[1] * stats.beta.pdf(u, a[1], b[1])
    total = l1 + l2 + 1e-6
    return l1 / total, l2 / total, stats.beta.cdf(u, a[0], b[0]), stats.beta.cdf(u, a[1], b[1])


def official_class_predict(bmm: BetaMixture, counts: np.ndarray, groups: np.ndarray) -> tuple:
    """The official class-wise evaluation: scipy called once per sample in a Python loop."""
    out = np.zeros((4, len(counts)))
    for i, (c, g) in enumerate(zip(counts, groups)):
        u = bmm.normalise(np.array([c]), np.array([g]))[0]
        a, b, p = bmm.alpha[g], bmm.beta[g], bmm.pi[g]
        l1, l2 = p[0] * stats.beta.pdf(u, a[0], b[0]), p[1] * stats.beta.pdf(u, a[1], b[1])
        out[:, i] = (l1 / (l1 + l2 + 1e-6), l2 / (l1 + l2 + 1e-6), stats.beta.cdf(u, a[0], b[0]),
                     stats.beta.cdf(u, a[1], b[1]))
    return tuple(out)


def _best_time(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def step_work_benchmark(*, device, batch: int, classes: int, repeat: int = 200) -> dict:
    """Best seconds of each variant's own work in a step with the network taken out: the "model"
    hands back leaf logits, so what is timed is the loss, its backward and (for IDO) the bookkeeping.
    The difference to the plain loss is what IDO adds to a step, free of the network's noise."""
    n = 50 * batch
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, classes, (batch,), generator=g).to(device)
    index = torch.randperm(n, generator=g)[:batch].to(device)
    logits = [torch.randn(batch, classes, generator=g).to(device).requires_grad_() for _ in range(VIEWS)]

    def network(images):  # the logits are the "images"
        return None, images

    def timed(loss_fn) -> float:
        def run():
            for leaf in logits:
                leaf.grad = None
            loss_fn().backward()
            _sync(device)
        return _best_time(run, repeat)

    noisy_labels = torch.randint(0, classes, (n,), generator=g).numpy()
    stage1, stage2 = _ido_steps(n=n, noisy_labels=noisy_labels, classes=classes, device=device)
    return {
        "plain CE": timed(lambda: F.cross_entropy(logits[0].float(), labels)),
        "stage 1": timed(lambda: stage1(network, (logits[0], labels, index))),
        "two-view CE": timed(lambda: F.cross_entropy(logits[0].float(), labels)
                             + F.cross_entropy(logits[1].float(), labels)),
        "stage 2 global": timed(lambda: loss_and_terms(stage2["global"](network, (tuple(logits), labels, index)))[0]),
        "stage 2 class": timed(lambda: loss_and_terms(stage2["class"](network, (tuple(logits), labels, index)))[0]),
    }


def bmm_benchmark(*, device, batch: int = 128, classes: int = 100, repeat: int = 20) -> dict:
    rng = np.random.default_rng(0)
    n = 50_000
    counts = rng.integers(0, 6, n)
    labels = rng.integers(0, classes, n)
    out = {}
    for kind in ("global", "class"):
        w = SampleWeights(class_wise=kind == "class", noisy_labels=labels, num_classes=classes, device=device,
                          new_events=VIEWS, noisy_weight=_Cfg.noisy_weight)
        w.fit(counts, iterations=20)
        index = torch.as_tensor(rng.choice(n, batch, replace=False), device=device)
        batch_counts = torch.as_tensor(counts, device=device)[index]
        host_groups = labels[index.cpu().numpy()]

        def lookup():
            result = w(batch_counts, index)
            _sync(device)
            return result

        if kind == "global":
            def scipy_outputs():
                return official_global_predict(w.bmm, batch_counts.cpu().numpy())
        else:
            def scipy_outputs():
                return official_class_predict(w.bmm, batch_counts.cpu().numpy(), host_groups)

        def official():  # counts to the host, scipy, tau1, tau2, F1, F2 back to the device, weights there
            tau1, tau2, f1, f2 = (torch.as_tensor(v, dtype=torch.float32, device=device) for v in scipy_outputs())
            return loss_weights(clean_posterior=tau1, noisy_posterior=tau2, clean_cdf=f1, noisy_cdf=f2,
                                noisy_weight=_Cfg.noisy_weight)
        # same answer, then time
        ref = official()
        got = lookup()
        assert got.shape == ref.shape == (3, batch)
        np.testing.assert_allclose(got.cpu().numpy(), ref.cpu().numpy(), rtol=1e-4, atol=1e-5)
        t_lookup, t_official = _best_time(lookup, repeat * 10), _best_time(official, repeat)
        out[kind] = (t_lookup, t_official)
    big = rng.integers(0, 16, 1_000_000)
    out["fit global 1M"] = _best_time(lambda: BetaMixture().fit(big, max_iter=20), 3)
    cls = rng.integers(0, classes, 1_000_000)
    out["fit 100 classes"] = _best_time(lambda: BetaMixture(num_groups=classes).fit(big, groups=cls, max_iter=20), 3)
    return out


def machine(device: torch.device) -> str:
    """The CPU (and the GPU when ``device`` is one), torch version and thread count."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    gpu = f"{torch.cuda.get_device_name(device)} with " if device.type == "cuda" else ""
    return f"{gpu}{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32")
    parser.add_argument("--channels_last", action="store_true")
    parser.add_argument("--quick", action="store_true", help="small model, few rounds (smoke run)")
    add_output_options(parser, DOCS_PAGE)
    args = parser.parse_args(argv)
    command = " ".join(["python benchmarks/overhead.py", *(sys.argv[1:] if argv is None else argv)])
    if args.quick:
        args.backbone, args.resolution, args.batch, args.steps, args.rounds = "test_resnet", 32, 32, 3, 3
    device = torch.device(args.device)

    step_times = step_benchmark(device=device, backbone=args.backbone, resolution=args.resolution,
                                batch=args.batch, classes=args.classes, steps=args.steps, rounds=args.rounds,
                                precision=args.precision, channels_last=args.channels_last)
    steps = {name: statistics.median(t) for name, t in step_times.items()}
    work = step_work_benchmark(device=device, batch=args.batch, classes=args.classes)
    bmm = bmm_benchmark(device=device)
    pairs = {"stage 1 / plain CE": ("stage 1", "plain CE"),
             "stage 2 global / two-view CE": ("stage 2 global", "two-view CE"),
             "stage 2 class / two-view CE": ("stage 2 class", "two-view CE")}
    ratios = {name: paired_ratio(step_times, *pair) for name, pair in pairs.items()}
    targets = {"stage 1 / plain CE": 1.02, "stage 2 global / two-view CE": 1.05,
               "stage 2 class / two-view CE": 1.05}
    lines = [
        BEGIN,
        "# Performance: the cost of IDO's bookkeeping",
        "",
        f"Measured by `{command}` on {machine(device)}, "
        f"device `{device}`, {time.strftime('%Y-%m-%d')}.",
        "",
        f"## Training step ({args.backbone}, {args.resolution} px, batch {args.batch}, {args.classes} classes, "
        f"{args.precision}{', channels_last' if args.channels_last else ''}; "
        f"median of {args.rounds} rounds of {args.steps} steps, variants in rotating order)",
        "",
        "| variant | ms / step | images / s |",
        "|---|---|---|",
    ] + [f"| {name} | {1000 * t:.2f} | {args.batch / t:.1f} |" for name, t in steps.items()] + [
        "",
        "(images / s counts each image once, whatever its number of views.)",
        "",
        "| ratio | median of the rounds | range of the rounds | target | met |",
        "|---|---|---|---|---|",
    ] + [f"| {name} | {r:.3f} | {round_range(step_times, *pairs[name])} | <= {targets[name]:.2f} | "
         f"{'yes' if r <= targets[name] else 'NO'} |" for name, r in ratios.items()] + [
        "",
        "(A ratio pairs the two times of one round; the range shows how much single rounds scatter.)",
        "",
        "### The same steps without the network",
        "",
        "The \"model\" hands back fixed logits, so only the loss, its backward and IDO's bookkeeping are timed "
        "(best of 200 calls); what IDO adds is then measured without the network's noise.",
        "",
        "| variant | us / step | added to the plain loss (us) | added, share of the plain step |",
        "|---|---|---|---|",
    ] + [f"| {name} | {1e6 * work[name]:.1f} | " + ("- | - |" if base is None else
         f"{1e6 * (work[name] - work[base]):.1f} | {100 * (work[name] - work[base]) / steps[base]:.3f} % |")
         for name, base in (("plain CE", None), ("stage 1", "plain CE"), ("two-view CE", None),
                            ("stage 2 global", "two-view CE"), ("stage 2 class", "two-view CE"))] + [
        "",
        "## Per-batch loss weights from the BMM (batch 128, 100 classes for the class-wise table)",
        "",
        "| mixture | device lookup (us) | official scipy per batch (us) | speed-up | target | met |",
        "|---|---|---|---|---|---|",
    ] + [f"| {kind} | {1e6 * bmm[kind][0]:.1f} | {1e6 * bmm[kind][1]:.1f} | {bmm[kind][1] / bmm[kind][0]:.0f}x | "
         f">= 100x | {'yes' if bmm[kind][1] / bmm[kind][0] >= 100 else 'NO'} |" for kind in ("global", "class")] + [
        "",
        "Both columns turn the wrong-event counts of a batch into the (3, B) weights of the clean, consistency "
        "and noisy loss terms on the device.  The lookup gathers them from the table built at each fit.  The "
        "official global script evaluates scipy vectorised over the batch, the class-wise script calls scipy "
        "once per sample; both copy the counts to the host, tau1, tau2, F1, F2 back, and compute the weights "
        "there.",
        "",
        "## BMM fit (20 EM iterations)",
        "",
        "| fit | seconds | target |",
        "|---|---|---|",
        f"| global, 1,000,000 counts | {bmm['fit global 1M']:.4f} | < 1 |",
        f"| 100 classes, 1,000,000 counts | {bmm['fit 100 classes']:.4f} | < 1 |",
        "",
        "EM runs on the histogram of the distinct (class, count) pairs with their multiplicities, so a fit "
        "costs the same for 50,000 or 1,000,000 samples.",
        END,
        "",
    ]
    text = "\n".join(lines)
    print(text)
    out = output_path(args, DOCS_PAGE)
    if out:
        write_section(text, out, BEGIN, END)
    return {"steps": steps, "step_times": step_times, "ratios": ratios, "work": work, "bmm": bmm}


if __name__ == "__main__":
    main()
