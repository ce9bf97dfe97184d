"""ragkit web app entry point: `streamlit run app.py`. The pages arrive with the app issue."""
import streamlit as st

st.set_page_config(page_title="ragkit", page_icon="🖼️", layout="wide")
st.title("ragkit")
st.write("Asset search and promo-image studio. The Library, Search and Studio pages are on their way; "
         "meanwhile use the CLI: `python -m ragkit ingest FOLDER`, `python -m ragkit search \"TEXT\"`.")
