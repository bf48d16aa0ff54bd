"""gRPC servicers: translate wire messages and delegate to the engine."""
