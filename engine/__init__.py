"""Podium's training engine.

Qt-free by contract (tests enforce it). The light modules -- ``protocol``,
``config``, ``rundir``, ``control`` -- import neither torch nor music libraries,
so the GUI process may use them; everything else runs under torchrun or as an
engine subcommand in a child process.
"""
