"""The torch-free contract between the engine, the CLI and the app.

Everything that crosses the run directory is defined here, and nothing here
imports torch, the music libraries or Qt: the event stream (``events``), the
command inbox (``commands``), checkpoint manifests (``manifest``), the run
directory's layout and launcher record (``rundir``), the config schema
(``config``, ``monitor_config``, ``search_space``) and the progress lines of
engine subcommands (``progress``). The app imports nothing else from the engine.
"""
