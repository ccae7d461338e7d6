"""``rpmpipe report``: a static site for the billing team and care managers.

``inputs`` gathers the figures from the stages (engagement records, the worklist, the
export ledger, what the next export would hold or correct, the registry); ``site`` writes
them as plain files; ``charts`` holds the Vega-Lite specs; ``serve`` shows a site on
localhost.
"""
