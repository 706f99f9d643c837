"""asyncssh, imported once without its import-time noise: it still names DSA keys, which the cryptography
package deprecates with a warning on every start of the app (not ours to fix, nothing for a user to do)."""

import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # CryptographyDeprecationWarning is a UserWarning
    import asyncssh

__all__ = ["asyncssh"]
