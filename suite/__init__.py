"""The suite machinery, generic over claims: the pytest plugin and session state, verdict statistics,
recorded expectations, snapshots, and the report with its figures. It imports the instrument (`lens`)
and knows no particular claim; the claims live in `findings/`."""
