"""What the tests share: helpers, fixture plugins and the process harness. No tests here."""
