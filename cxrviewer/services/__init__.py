"""Application services without Qt: study/worklist model, analysis pipeline, case library, export."""
