"""The fleet's view of the vehicles: ``roadseg-monitor`` (:mod:`fleet.monitor`)
and ``roadseg-dashboard`` (:mod:`fleet.dashboard`), both reading what the
vehicles publish over MQTT. Imports ``edge_runtime`` only."""
