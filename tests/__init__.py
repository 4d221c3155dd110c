import pytest

# Plain asserts in the shared helpers report their values like those in tests.
pytest.register_assert_rewrite("tests.helpers")
