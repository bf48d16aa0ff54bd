"""Generated protobuf and gRPC code for the Tether wire contract (proto/tether/v1).

Never edited by hand: run ``make proto`` after changing a .proto file.
"""
