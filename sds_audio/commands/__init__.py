"""Subcommands of ``sds-audio`` that live outside :mod:`sds_audio.cli`.

Each module here defines ``add_parsers(sub)``, which adds its subcommands to the
``argparse`` sub-parser set; :func:`sds_audio.cli.build_parser` calls each one
explicitly (no registration by import side effect). The functions they point at
follow the CLI's rule: raise :class:`~sds_audio.errors.SDSAudioError` for user
errors, print a short summary, return the exit status.
"""
