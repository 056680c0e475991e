"""Command-line interface. It parses options and delegates to :mod:`hmmclf.app.pipeline`.

Every user error is one line on stderr and a non-zero exit code (2); ``--debug``
or ``HMMCLF_DEBUG=1`` shows tracebacks instead.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal

if __name__ == "__main__":  # python -m hmmclf.cli: a Ctrl-C while the modules load exits quietly too
    signal.signal(signal.SIGINT, lambda *_: os._exit(130))
import shlex
import sys
import time
from pathlib import Path

import click

from .. import __version__
from ..data.grouping import GROUPS_HELP
from ..utils.errors import HmmclfError
from .errors_command import ERRORS_HELP, errors_command

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1


def _debug_enabled() -> bool:
    return os.environ.get("HMMCLF_DEBUG", "") not in ("", "0")


_USER_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


def _usage_error(exc: click.UsageError) -> None:
    """Click's usage error as one line (click prints usage, a hint and the error on three)."""
    if _debug_enabled():
        raise exc
    command = exc.ctx.command_path if exc.ctx is not None else "hmmclf"
    click.echo(f"{command}: error: {exc.format_message()} (see '{command} -h')", err=True)
    sys.exit(exc.exit_code)


def _interrupted() -> None:
    """Ctrl-C: stop the worker processes and exit 130 at once.

    Every file is written atomically and every lock is the kernel's, so there is
    nothing to finish; the exit skips interpreter clean-up (loky's exit handler
    waits for its workers) and a second Ctrl-C meanwhile cannot print a traceback.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from ..utils.parallel import kill_workers

    kill_workers()
    click.echo("hmmclf: interrupted", err=True)
    if not _HARD_EXIT:  # called in-process (tests, a notebook): an ordinary exit
        signal.signal(signal.SIGINT, signal.default_int_handler)
        sys.exit(130)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(130)


_HARD_EXIT = False


class _Group(click.Group):
    """A click group that turns exceptions into one-line errors."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            _usage_error(exc)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            _usage_error(exc)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            _interrupted()
        except (HmmclfError, FileExistsError) as exc:
            if _debug_enabled():
                raise
            click.echo(f"hmmclf: error: {exc}", err=True)
            sys.exit(EXIT_USER_ERROR)
        except OSError as exc:
            # A full disk, a quota, a read-only or forbidden folder: the user's to fix, named in one line.
            if _debug_enabled():
                raise
            if exc.errno not in _USER_ERRNOS:
                _internal_error(exc)
            where = f"{exc.filename}: " if exc.filename else ""
            click.echo(f"hmmclf: error: {where}{exc.strerror or exc}", err=True)
            sys.exit(EXIT_USER_ERROR)
        except Exception as exc:  # noqa: BLE001 - the last line of defence against tracebacks
            if _debug_enabled():
                raise
            _internal_error(exc)


def _internal_error(exc: BaseException) -> None:
    message = str(exc).splitlines()[0] if str(exc) else ""
    click.echo(
        f"hmmclf: internal error: {type(exc).__name__}: {message} (run with --debug for the traceback)",
        err=True,
    )
    sys.exit(EXIT_INTERNAL_ERROR)


class Progress:
    """Progress on stderr: a rewritten line on a terminal, a few lines in a log."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.started: dict[str, float] = {}
        self.last_decile: dict[str, int] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self.quiet:
            return
        now = time.perf_counter()
        start = self.started.setdefault(stage, now)
        fraction = done / total if total else 1.0
        text = f"{stage}: {done}/{total} ({100 * fraction:.0f}%) {now - start:.1f} s"
        if self.tty:
            click.echo("\r" + text + " " * 8, err=True, nl=done >= total)
        else:
            decile = int(fraction * 10)
            if decile != self.last_decile.get(stage) or done >= total:
                self.last_decile[stage] = decile
                click.echo(text, err=True)


def _log(message: str) -> None:
    click.echo(message, err=True)


def _command_line() -> str:
    return "hmmclf " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _experiment(config_path: str | None, **overrides):
    """The experiment of ``--config`` (or the defaults) with what the command line gave on top."""
    from .experiment import Experiment, load_experiment

    experiment = load_experiment(config_path) if config_path else Experiment()
    try:
        return experiment.with_overrides(**overrides)
    except ValueError as exc:
        raise HmmclfError(str(exc)) from None


def _path_option(flag: str, dest: str, help_text: str, default: str | None, folder: bool):
    """An option naming a folder (``folder``) or a file; its default shown when there is one."""
    return click.option(
        flag,
        dest,
        default=default,
        show_default=default is not None,
        type=click.Path(file_okay=not folder, dir_okay=folder),
        help=help_text,
    )


def _out_option(help_text: str, default: str | None, folder: bool = False, file: bool = False):
    """The ``--out`` option: a folder (``out_dir``) or a file (``out_path``) the command writes."""
    return _path_option("--out", "out_dir" if folder else "out_path", help_text, default, folder)


_features_option = _path_option(
    "--features", "features_dir", "Feature cache (extracted first if missing).", "features", folder=True
)
_model_file_option = _path_option("--model", "model_path", "Model file from 'hmmclf train'.", "model.npz", folder=False)


def _features_of(experiment, features_dir: str, data_dir: str, labels_csv: str, groups: str, jobs: int | None):
    """The experiment's feature set for cv and train: the cache, extracted first when needed."""
    from .pipeline import ensure_features, features_dir_for

    ctx = click.get_current_context()
    labels_given = any(
        ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE for name in ("labels_csv", "data_dir")
    )
    return ensure_features(
        features_dir_for(features_dir, experiment.features),
        data_dir,
        labels_csv,
        config=experiment.features,
        groups=groups,
        n_jobs=jobs,
        progress=Progress(),
        log=_log,
        labels_given=labels_given,
    )


def _jobs_option(f):
    return click.option("--jobs", "-j", type=int, default=None, help="Worker processes (default: all cores).")(f)


def _scheduler_option(f):
    return click.option(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="Run the parallel work on a Dask cluster (tcp://host:port; default $DASK_SCHEDULER_ADDRESS or local).",
    )(f)


def _data_options(f):
    f = click.option(
        "--groups",
        default="auto",
        show_default=True,
        help=f"What keeps a patient's clips on one side of a CV split: {GROUPS_HELP}.",
    )(f)
    f = _path_option("--labels", "labels_csv", "Labels file.", "train.csv", folder=False)(f)
    return _path_option("--data", "data_dir", "Folder of clips.", "train", folder=True)(f)


def _config_option(what: str):
    def decorate(f):
        return click.option(
            "--config",
            "config_path",
            default=None,
            metavar="NAME|PATH",
            help=f"Experiment config {what}: the name of a shipped experiment (listed by 'hmmclf experiments'; "
            "works from any folder) or the path of a TOML file.",
        )(f)

    return decorate


def _model_options(f):
    f = click.option("--topology", type=click.Choice(["ergodic", "left-right"]), default=None, help="HMM topology.")(f)
    f = click.option("--states", type=click.IntRange(1, 64), default=None, help="Hidden states per HMM.")(f)
    return f


@click.group(cls=_Group, commands=[errors_command], context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hmmclf")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
def main(debug: bool) -> None:
    """Classify lung-sound clips as normal, crackle, wheeze or both with one Gaussian HMM per class."""
    if debug:
        os.environ["HMMCLF_DEBUG"] = "1"


@main.command()
@click.argument("kind", type=click.Choice(["icbhi", "sprsound"]))
@click.argument("src", type=click.Path(file_okay=False))
@_out_option("Where train/, train.csv and skipped.csv go.", default=".", folder=True)
@_jobs_option
def prepare(kind: str, src: str, out_dir: str, jobs: int | None) -> None:
    """Cut a downloaded ICBHI 2017 or SPRSound release into one clip per respiratory cycle or event.

    SRC is the unpacked release, searched recursively. Writes OUT/train/ (16-bit
    wav clips at each recording's own rate), OUT/train.csv (patient_id for
    grouped CV) and OUT/skipped.csv (every annotation row that gave no clip,
    with its reason). Re-running cuts again only recordings that changed.
    """
    from ..data.prepare import format_prepare_summary, prepare_corpus

    _log(f"prepare: {kind} release in {src} -> {out_dir}")
    result = prepare_corpus(kind, src, out_dir, n_jobs=jobs, progress=Progress())
    click.echo(format_prepare_summary(result))


@main.command()
@_data_options
@_out_option("Feature cache directory.", default="features", folder=True)
@_config_option("whose [features] to use")
@_jobs_option
@_scheduler_option
def extract(
    data_dir: str,
    labels_csv: str,
    groups: str,
    out_dir: str,
    config_path: str | None,
    jobs: int | None,
    scheduler: str | None,
) -> None:
    """Extract MFCC + delta frame features of every usable clip into a cache.

    Unusable rows and clips are skipped and listed with their reason in
    OUT/skipped.csv. Re-running recomputes only new or changed clips. With
    --config, the cache goes where 'cv --config' and 'train --config' look.
    """
    from ..utils.parallel import WORKER_MODULES, compute_backend, release_workers

    with compute_backend(scheduler, n_jobs=jobs, preload=WORKER_MODULES["extract"]) as backend:
        # Imported while the worker processes start.
        from ..data.extraction import extract_corpus
        from .pipeline import extract_summary, features_dir_for

        experiment = _experiment(config_path)
        _log(f"extract: {data_dir} with {labels_csv} on {backend}")
        result = extract_corpus(
            data_dir,
            labels_csv,
            features_dir_for(out_dir, experiment.features),
            config=experiment.features,
            groups=groups,
            n_jobs=jobs,
            progress=Progress(),
        )
        # The workers are done: the command exits without waiting for them to wind down.
        release_workers()
    for note in result.notes:
        _log(f"note: {note}")
    click.echo(extract_summary(result))
    click.echo(result.features.describe_groups())


@main.command()
@click.option(
    "--folds", type=click.IntRange(2, 100), default=None, help="Number of CV folds [default: the config's, else 5]."
)
@click.option(
    "--seed", type=click.IntRange(min=0), default=None, help="Seed of the folds and models [default: config's, else 0]."
)
@_features_option
@_out_option("Report directory (default reports/cv-<timestamp>).", default=None, folder=True)
@_config_option("(features, model, decision rule, cv)")
@click.option(
    "--repeats",
    type=click.IntRange(1, 100),
    default=None,
    help="Repeat the CV with seeds SEED, SEED+1, ... [default: 1]",
)
@click.option(
    "--dead-zone",
    type=click.Choice(["auto", "on", "off"]),
    default=None,
    help="Leave out of each training part the clips that sound like the test part's recordings "
    "(a buffer around each test part) [default: auto = on when the groups are inferred from the audio].",
)
@click.option("--errors", type=click.IntRange(0, 1000), default=5, show_default=True, help=ERRORS_HELP)
@_data_options
@_model_options
@_jobs_option
@_scheduler_option
def cv(
    folds,
    seed,
    features_dir,
    out_dir,
    config_path,
    repeats,
    dead_zone,
    errors,
    data_dir,
    labels_csv,
    groups,
    states,
    topology,
    jobs,
    scheduler,
) -> None:
    """Stratified, patient-grouped K-fold cross-validation with the ICBHI metrics.

    Writes into a new report directory (never overwriting one): report.json (every number, the configuration
    and the command), report.md, report.html (one self-contained page, figures inlined), predictions.csv (every
    clip's out-of-fold prediction), confusion.png, tradeoff.png (sensitivity against specificity), folds.png
    (Score, Se, Sp per fold), groups.csv and groups.png (Se, Sp and Score per patient or group). The page's
    Errors section plays the most confident mistakes of each confusion cell (--errors; 'hmmclf errors' lists
    them). The baselines (always normal, class-prior random, GBM on clip statistics) run on the same folds.
    Options given on the command line override the config.
    """
    from ..utils.parallel import WORKER_MODULES, compute_backend

    with compute_backend(scheduler, n_jobs=jobs, preload=WORKER_MODULES["cv"]) as backend:
        # Imported while the worker processes start.
        from ..evaluation.report_text import format_summary
        from .pipeline import new_report_dir, run_cv

        experiment = _experiment(
            config_path,
            folds=folds,
            seed=seed,
            repeats=repeats,
            dead_zone=dead_zone,
            n_states=states,
            topology=topology,
        )
        out = Path(out_dir) if out_dir else new_report_dir(prefix=f"cv-{experiment.name}" if config_path else "cv")
        try:
            features = _features_of(experiment, features_dir, data_dir, labels_csv, groups, jobs)
            _log(features.describe_groups())
            _log(
                f"cv: experiment {experiment.name!r}, {experiment.cv.folds} folds x {experiment.cv.repeats} repeat(s) "
                f"over {len(features)} clips on {backend}"
            )
            command = _command_line()
            report = run_cv(features, out, experiment, n_jobs=jobs, progress=Progress(), command=command, errors=errors)
        except BaseException:
            if not out_dir:  # the report directory claimed above is not left behind empty
                with contextlib.suppress(OSError):
                    out.rmdir()
            raise
    click.echo(format_summary(report))
    click.echo(f"cv: {report['seconds']:.1f} s; report in {out}/report.md")


@main.command()
@click.argument("reports", nargs=-1, required=True, type=click.Path(exists=True))
@_out_option(
    "Markdown leaderboard to write; an existing file is refused unless --force.", default="leaderboard.md", file=True
)
@click.option("--force", is_flag=True, help="Overwrite an existing --out file.")
def compare(reports, out_path, force) -> None:
    """Leaderboard of cv reports (directories or report.json files), best Score first.

    Each row is named by its experiment plus whatever setting differs between
    the compared reports (seed, repeats, folds, groups, model and feature
    parameters), so no two rows share a name. An existing leaderboard file is
    never overwritten silently: compare stops with an error unless --force is
    given.
    """
    from ..evaluation.leaderboard import leaderboard
    from ..utils.files import atomic_write_text
    from .experiment import run_names

    if Path(out_path).exists() and not force:
        raise HmmclfError(f"{out_path}: already exists; give --force to overwrite it, or another --out")
    text, markdown = leaderboard(reports, name_rows=run_names)
    click.echo(text)
    atomic_write_text(out_path, markdown)
    _log(f"compare: leaderboard written to {out_path}")


@main.command()
@click.option("--names", is_flag=True, help="Only the names, one a line (for scripts).")
def experiments(names: bool) -> None:
    """List the experiments shipped with hmmclf: name and description, one a line.

    Run one from any folder with 'hmmclf cv --config NAME' (also extract and
    train); copy one (find it under hmmclf/app/experiments/ in the installed
    package) and pass its path to --config to change it.
    """
    from .experiment import format_experiment_list, shipped_experiment_names, shipped_experiments

    click.echo("\n".join(shipped_experiment_names()) if names else format_experiment_list(shipped_experiments()))


@main.command()
@_features_option
@_out_option("Model file to write.", default="model.npz", file=True)
@_data_options
@_model_options
@_config_option("to train with")
@_jobs_option
def train(features_dir, out_path, data_dir, labels_csv, groups, states, topology, config_path, jobs) -> None:
    """Fit the model on every usable clip and save it (npz + JSON, no pickle)."""
    from .pipeline import train_model

    experiment = _experiment(config_path, n_states=states, topology=topology)
    features = _features_of(experiment, features_dir, data_dir, labels_csv, groups, jobs)
    _log(f"train: {len(features)} clips, experiment {experiment.name!r}")
    model, path, seconds = train_model(features, out_path, experiment.model)
    from .output import format_fit_report

    _log(format_fit_report(model.fit_report_))
    click.echo(f"train: model saved to {path} ({seconds:.1f} s)")


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@_model_file_option
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@click.option("--jobs", "-j", type=int, default=1, show_default=True, help="Worker processes for feature extraction.")
def predict(paths, model_path, fmt, jobs) -> None:
    """Predict the label set of clips (files or directories of clips).

    A directory is searched (not recursively) for every file whose extension
    names a format libsndfile reads (wav, flac, ogg, mp3, aiff, ...); what else
    it holds is listed on stderr, one line per reason ("predict: skipped 2
    files in DIR that are not audio ...").

    Exit codes: a path that does not exist is a one-line error naming it,
    exit code 2, before anything is predicted. A clip that exists but cannot
    be decoded or used gets an error entry in the output; the others are still
    predicted, and the exit code is 1 at the end.
    """
    from .output import format_predictions
    from .pipeline import predict_clips

    results = predict_clips(paths, model_path, n_jobs=jobs, log=_log)
    click.echo(format_predictions(results, fmt))
    failed = sum("error" in r for r in results)
    if failed:
        _log(f"predict: {failed} of {len(results)} clips could not be read")
        sys.exit(1)


@main.command()
@click.argument("clip", type=click.Path(dir_okay=False))
@_model_file_option
@_out_option("PNG to write (default: <clip name>.explain.png in the current directory).", default=None, file=True)
@click.option(
    "--true-label",
    default=None,
    help="The clip's true label (a class, or a label set such as crackle+wheeze), shown beside the prediction.",
)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def explain(clip, model_path, out_path, true_label, fmt) -> None:
    """Show where in CLIP the model heard what: waveform, spectrogram, Viterbi paths, likelihood ratios."""
    from ..utils.errors import AudioError
    from .explain import explain_clip, format_explanation, plot_explanation

    try:
        explanation, samples = explain_clip(clip, model_path, true_label=true_label)
    except AudioError as exc:
        raise HmmclfError(str(exc)) from None
    except ValueError as exc:  # an unknown --true-label
        raise HmmclfError(f"--true-label {true_label!r}: {exc}") from None
    png = plot_explanation(explanation, samples, out_path or f"{Path(clip).stem}.explain.png")
    explanation["figure"] = str(png)
    if fmt == "json":
        click.echo(json.dumps(explanation, indent=2))
    else:
        click.echo(format_explanation(explanation))
        click.echo(f"figure: {png}")


@main.command()
@click.argument("directory", default="demo", type=click.Path(file_okay=False))
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@_jobs_option
def demo(directory: str, seed: int, jobs: int | None) -> None:
    """Synthesise a small corpus in DIRECTORY and run extract, cv, train and predict on it.

    Only those four steps (not prepare, compare or explain). The corpus is
    DIRECTORY/train + DIRECTORY/train.csv; the features, report, model and
    the predictions of five clips (one per label state and an unreadable one)
    are written into DIRECTORY too.
    """
    from ..evaluation.report_text import format_summary
    from .output import format_predictions
    from .pipeline import run_demo

    result = run_demo(directory, seed=seed, n_jobs=jobs, progress=Progress(), log=_log)
    click.echo(format_summary(result.report))
    click.echo(format_predictions(result.predictions, "table"))
    click.echo(
        f"demo: done in {result.timing()}. Corpus {result.directory}/train + train.csv, "
        f"model {result.model_path}, report {result.report_dir}/report.md"
    )


def run() -> None:
    """The ``hmmclf`` console script: :func:`main`, then a quick exit.

    At exit, CPython's cyclic garbage collector walks every object of every
    imported module; with pandas, scikit-learn and matplotlib loaded that
    costs about a quarter of a second per command. Every file is written and
    closed by then and the operating system reclaims the memory, so the
    objects are frozen (``gc.freeze``) and that walk is skipped.
    """
    import gc

    global _HARD_EXIT
    _HARD_EXIT = True
    # One BLAS/OpenMP thread unless the user says otherwise (set before numpy loads): the parallel
    # work already runs one process per core, and on the serial steps (train, predict, --jobs 1) a
    # second BLAS thread spin-waits on the small matrix products and made `train` of the demo
    # corpus take 8.8 s instead of 0.5 s on 2 cores.
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, "1")
    # After a Ctrl-C the workers are killed and this process leaves without clean-up; loky's
    # resource tracker then removes the pool's semaphores itself: no need for its warning.
    quiet = "ignore:resource_tracker:UserWarning"
    os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"), quiet]))
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        main()
    except KeyboardInterrupt:  # before or after a command's own handler (imports, argument parsing)
        _interrupted()
    finally:
        # The work is done and written: a Ctrl-C during the interpreter's exit
        # (loky's handler joins its threads) would only print a traceback.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        gc.freeze()


if __name__ == "__main__":  # pragma: no cover
    run()
