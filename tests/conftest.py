pytest_plugins = ["tests.conftest_store"]
