"""The limits a person can meet, written once: the CLI's flags, the pages' widgets and the core's
checks all read them here, so a change is made in one place."""

MAX_HITS = 1024          # search results per query (the pages show far fewer; the CLI's -k goes this far)
QUERY_WINDOW = 16384     # rows per Milvus query: its maxQueryResultWindow (offset + limit); more goes by iterator
MAX_VARIATIONS = 8       # images per Studio request, and per product in a batch
MAX_CONCURRENCY = 16     # requests at a time in a batch or describe job (Gemini's 429s pace them further)
