"""The HTTP entry point: FastAPI routes per context (api/), the pages per role (pages/), who may see what (visibility), problems, limits and headers. Calls services only."""
