"""``hmmclf errors``: the mistakes of a cv report, listed and copied for listening (registered in :mod:`.cli`)."""

from __future__ import annotations

import click

from ..utils.errors import HmmclfError

ERRORS_HELP = "Most confident mistakes per confusion-matrix cell that report.html plays (0: no Errors section)."


def _say(message: str) -> None:
    click.echo(message, err=True)


@click.command("errors")
@click.argument("report_dir", type=click.Path())
@click.option("--class", "true_class", default=None, metavar="CLASS", help="Only mistakes whose true class is CLASS.")
@click.option(
    "--top",
    type=click.IntRange(1, 100000),
    default=None,
    help="Mistakes per confusion cell, most confident first [default: as many as the report page shows].",
)
@click.option("--copy", "copy_dir", default=None, type=click.Path(file_okay=False), help="Copy the clips into DIR.")
@click.option("--link", is_flag=True, help="With --copy: symbolic links instead of copies.")
def errors_command(report_dir, true_class, top, copy_dir, link) -> None:
    """List the mistakes of a cv report (file, true, predicted, posterior, group), most confident first.

    Per cell of the confusion matrix off its diagonal, read from the report's
    predictions.csv and report.json: by default the clips its report.html
    plays. --copy DIR copies (or --link symlinks) the clips into DIR, named
    NN_true-as-predicted_file, for listening in any audio player.
    """
    from ..evaluation.mistakes import clip_folder_of, copy_mistakes, format_mistakes, list_mistakes

    mistakes, report = list_mistakes(report_dir, true_class=true_class, top=top)
    click.echo(format_mistakes(mistakes))
    if copy_dir is None:
        return
    folder = clip_folder_of(report, report_dir)
    written, missing = copy_mistakes(mistakes, folder, copy_dir, link=link)
    for path in missing[:10]:
        _say(f"errors: clip not found: {path}")
    verb = "linked" if link else "copied"
    _say(f"errors: {len(written)} clips {verb} into {copy_dir}" + (f"; {len(missing)} not found" if missing else ""))
    if missing and not written:
        raise HmmclfError(f"none of the clips was found in {folder} (was the data folder moved?)")
