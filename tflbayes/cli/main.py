"""The ``tflbayes`` command line."""
from __future__ import annotations

import click

from tflbayes.cli import commands_bench, commands_calibrate, commands_core, commands_device, commands_distill

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tflbayes")
def cli():
    """tflbayes: Bayesian deep learning from Keras to LiteRT edge devices.

    Train a posterior, measure its uncertainty, shrink it, convert it to LiteRT and run it.
    """


for _cmd in [*commands_core.COMMANDS, *commands_distill.COMMANDS, *commands_device.COMMANDS, *commands_bench.COMMANDS,
             *commands_calibrate.COMMANDS]:
    cli.add_command(_cmd)


def main():
    cli(prog_name="tflbayes")


if __name__ == "__main__":
    main()
