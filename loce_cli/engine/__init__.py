"""The Python API behind every command: plain functions taking paths and options, returning dataclasses.

Functions raise :class:`loce_cli.errors.LoceError` subclasses for anything the user can fix.
"""
