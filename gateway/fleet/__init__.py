"""Fleet management on the gateway: signed configuration roll-out with a health window and rollback
(docs/fleet.md), and the inventory the platform lists gateways by."""
