pytest_plugins = ["tests.conftest_store", "tests.conftest_api", "tests.conftest_e2e", "tests.conftest_queue",
                  "tests.conftest_browser"]
