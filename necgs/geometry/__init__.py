"""Regular geometry representation: signed distances, TSDF volumes, DMC and TSDF-Def fitting."""
