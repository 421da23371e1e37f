"""Face verification for the terminal: 1:1 match of a camera frame against an enrolled template.

Why a package of its own: face work needs heavy optional packages (dlib, face_recognition,
face-recognition-models, OpenCV) that a kiosk without a camera never installs. Only
:mod:`atm_common.face.verify` touches them, and it imports OpenCV and face_recognition on
first use, raising a :class:`~terminal.errors.AtmError` that names the packages to
install when they are missing.

What travels: a :class:`~atm_common.face.verify.FaceTemplate` (128 numbers) serialises to
352 ASCII characters, so it fits the ISO 8583 private field 63 (999 at most) of a
request to the host, which compares it with the enrolled one.
"""
