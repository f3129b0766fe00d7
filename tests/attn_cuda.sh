#!/bin/sh
# The conformance tests of the raw call on the cuda backend (skips without a GPU).
exec "${top_builddir:-.}/tests/test_attn" cuda
