"""ragkit web app: `streamlit run app.py`.

Every page is a thin layer over the `ragkit` core: layout, widgets and session state here,
logic in ragkit/. The library (Milvus client, CLIP model) is opened once per process.
"""
import streamlit as st

from ragkit.storage.connection import quiet_milvus_logging
from ragkit.errors import RagkitError
from ragkit.ui import auth, drafts, sidebar, state

# A shipped image, not ":material/…:": Streamlit fetches a material favicon from fonts.gstatic.com,
# which an offline machine can't reach (the navigation's material icons come from its bundled font).
st.set_page_config(page_title="ragkit · image library", page_icon=str(state.APP_ICON),
                   layout="wide", initial_sidebar_state="expanded")
quiet_milvus_logging()

# Team deployments can require sign-in (RAGKIT_REQUIRE_LOGIN); nothing below renders before it.
try:
    auth.require_sign_in(state.settings())
except RagkitError as exc:
    state.stop_with(exc)

# The page files live in app_pages/, not pages/: Streamlit treats a `pages/` folder next to the
# entry script as a legacy multipage app until st.navigation has run once in the process, so the
# first request after a restart to e.g. /search would run that page alone (no sidebar, no banner).
page = st.navigation([
    st.Page(state.LIBRARY_PAGE, title="Library", icon=":material/photo_library:", default=True),
    st.Page(state.SEARCH_PAGE, title="Search", icon=":material/image_search:"),
    st.Page(state.STUDIO_PAGE, title="Studio", icon=":material/auto_awesome:"),
])

library = state.library()  # shows the error with its fix and stops, if the library can't open
sidebar.render_banner(library)
# A page's url_path is its file name, and "" for the default page (the Library).
sidebar.render(library, on_studio_page=page.url_path == "studio", on_library_page=page.url_path == "")
drafts.remember(library.settings)  # the Studio's brief, tray and results survive a reload (ragkit.ui.drafts)
page.run()
