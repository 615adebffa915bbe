"""Training: run plumbing (:mod:`.runtime`), files (:mod:`.files`), the shared loop (:mod:`.loop`),
the shared settings (:mod:`.config`).
"""
