"""Podium's training engine, grouped by job (see ARCHITECTURE.md).

Qt-free by contract. ``engine.contract`` is the torch-free part the app may
import; everything else runs under torchrun or as an engine subcommand in a
child process.
"""
