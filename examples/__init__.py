"""linechat's examples, each run by the tests (see README.md here)."""
