"""The one-command demo (``python main.py demo``): broker, simulator, agent and alerts with a live view.

It composes the agent, the simulator and a broker, so it sits above all of them; nothing imports it back.
"""
