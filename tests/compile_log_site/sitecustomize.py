"""Loaded by Python processes that tests start while SINTROVAE_TEST_COMPILE_LOG is set."""
import compile_log

compile_log.install()
