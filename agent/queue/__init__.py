"""The send-order queue: intake of orders, the executor that sends them, and the service the API calls."""
