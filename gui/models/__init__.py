"""Qt-free models of the desktop app: metric series, run state, ingestion, workspace.

Nothing here imports Qt, so all of it is tested without a QApplication.
"""
