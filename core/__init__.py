"""The bottom layer that the learner side (rl/), generation (rollout/) and
the reward hub (rewards/) all sit on: the user-error type, process clocks,
gathering Ray results with a deadline, and binding ports. It imports nothing
from those packages."""
