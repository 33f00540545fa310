# Slicer's macros as no-ops (see SlicerConfig.cmake).
function(ctkMacroCompilePythonScript)
endfunction()
function(slicerMacroBuildScriptedModule)
endfunction()
function(slicer_add_python_unittest)
endfunction()
