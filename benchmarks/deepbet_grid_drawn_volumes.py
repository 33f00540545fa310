"""Drawn volumes of the same lesions with deepbet on a 256^3 and a 224^3 crop (docs/speed.md,
"deepbet at a smaller internal grid"): the robustness benchmark's cached label maps of two work
folders (256: /work/data/rob6000, 224: /work/data/rob224, made with benchmarks/with_deepbet_grid.py),
each lesion found in both matched to the phantom's truth; prints per variant the drawn / true volume
medians, the paired 224 / 256 ratio and the extremes. Paths are this session's; edit them to reuse.
"""
import glob
import os
import statistics as st
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from BrainMetSegLib.evaluate.lesionwise import match_lesions
from BrainMetSegLib.synth.dataset import case_paths

key = os.path.basename(glob.glob('/work/data/rob6000/results/*')[0])
pairs=[]
for v in ('original','tilt15x15','slice5mm'):
  for k in range(20):
    cid=f'synth_{k:03d}'
    gt=sitk.ReadImage(str(case_paths(Path('/work/data/rob6000/phantoms'), cid)['instances']))
    out={}
    for root in ('/work/data/rob6000','/work/data/rob224'):
        lab=sitk.ReadImage(f'{root}/results/{key}/{v}/{cid}.labels.nii.gz')
        lab=sitk.Resample(lab, gt, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
        m=match_lesions(sitk.GetArrayFromImage(gt)>0, sitk.GetArrayFromImage(lab)>0, gt.GetSpacing(), "overlap", gt.GetDirection())
        out[root]={round(g.volume_mm3,3):(g.pred_volume_mm3/g.volume_mm3, g.pred_longest_diameter_mm-g.longest_diameter_mm, g.longest_diameter_mm) for g in m.gt if g.detected}
    a,b=out['/work/data/rob6000'],out['/work/data/rob224']
    pairs += [(v,a[t],b[t]) for t in a if t in b]
for v in ('original','tilt15x15','slice5mm'):
    P=[p for p in pairs if p[0]==v]
    va=[p[1][0] for p in P]; vb=[p[2][0] for p in P]
    rel=[y/x for x,y in zip(va,vb)]
    big=[p for p in P if p[1][2]>=10]
    print(v, 'n', len(P), '| drawn/true volume median 256 %.3f 224 %.3f' % (st.median(va), st.median(vb)),
          '| paired 224/256 median %.4f IQR %s min %.3f max %.3f' % (st.median(rel), np.round(np.percentile(rel,[25,75]),3), min(rel), max(rel)),
          '| diameter error median 256 %.2f 224 %.2f' % (st.median([p[1][1] for p in P]), st.median([p[2][1] for p in P])),
          '| >=10 mm (n %d) volume median %.3f %.3f' % (len(big), st.median([p[1][0] for p in big]), st.median([p[2][0] for p in big])))
ext=sorted(pairs, key=lambda p: p[2][0]/p[1][0])
for p in ext[:4]+ext[-3:]:
    print(p[0], 'true diam %.1f' % p[1][2], 'ratio256 %.2f ratio224 %.2f' % (p[1][0], p[2][0]))
